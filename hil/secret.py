"""Secrets that stay secret: one type for passwords, tokens and keys, and the redaction helpers.

A :class:`Secret` holds a password, token or key. Everything that turns it
into text — ``str``, ``repr``, ``format``, f-strings, ``%s``, logging,
tracebacks, pytest's ``-l`` locals — gives ``***``; only :meth:`Secret.reveal`
gives the value, and only the code that puts it on the wire calls it. It is
deliberately *not* a ``str`` subclass: ``json.dumps`` would write a ``str``
subclass's real value, so a Secret that reaches JSON fails loudly instead
(``TypeError``), and :func:`redact` turns it into ``***`` on purpose.

Whatever writes run records (bundles, reports, JUnit properties, logs) puts
its data through these helpers first:

* :func:`redact` — a copy of options (dicts, lists, dataclasses, an
  ``argparse.Namespace``) with every Secret, and every value under a key
  that names a secret (``password``, ``token``, ``psk``, ``key``...), as ``***``.
* :func:`redact_text` — a text with the value of every live Secret (and any
  extra ones given) replaced by ``***``; for log lines and captured output.
* :class:`SecretFilter` — a :class:`logging.Filter` doing the same to every
  record a handler emits.

:func:`read_token_file` and :func:`new_token_file` read and make the API
tokens (0600 files).
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import logging
import os
import re
import secrets
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MASK = "***"
# keys whose values are secrets whatever their type; "key" alone, or as a suffix (psk_key, api_key)
SECRET_KEY = re.compile(r"(pass(word|wd|phrase)?|secret|token|psk|credential|auth(orization)?|(^|[_-])key)$", re.I)
# keys that end like a secret key but name something public
PUBLIC_KEYS = frozenset({"public_key", "server_public_key", "ssh_public_key", "key_id", "monkey", "sort_key"})
MIN_REDACTED = 4  # shorter values are not searched in text: "***" everywhere instead of "a" is no help

_live: weakref.WeakSet[Secret] = weakref.WeakSet()
_live_lock = threading.Lock()


class Secret:
    """A password, token or key; shows as ``***`` everywhere (see the module docs)."""

    __slots__ = ("_value", "__weakref__")

    def __init__(self, value: str | bytes | Secret):
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, (str, bytes)):
            raise TypeError(f"a Secret holds str or bytes, not {type(value).__name__}")
        self._value = value
        with _live_lock:
            _live.add(self)

    def reveal(self) -> Any:
        """The value itself (str or bytes, as given): for the code that puts it on the wire only."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        mine = self._value
        theirs = other.reveal() if isinstance(other, Secret) else other
        if not isinstance(theirs, type(mine)):
            return False
        as_bytes = (lambda v: v if isinstance(v, bytes) else v.encode())  # noqa: E731
        return hmac.compare_digest(as_bytes(mine), as_bytes(theirs))  # no timing hint either

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self  # immutable: copies (dataclasses.asdict deep-copies) share it

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled: pass it on explicitly, or redact() what holds it")


def reveal(value: str | bytes | Secret | None) -> Any:
    """The plain value of a Secret, or ``value`` itself when it is not one."""
    return value.reveal() if isinstance(value, Secret) else value


def is_secret_key(key: object) -> bool:
    """Whether an option or field named ``key`` holds a secret (``password``, ``api_token``, ``psk``, ``psk_key``...)."""
    text = str(key).replace("-", "_").lower()
    return text not in PUBLIC_KEYS and SECRET_KEY.search(text) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` fit for a record: Secrets, and values under secret-naming keys, become ``***``.

    Walks dicts (any Mapping), lists, tuples, sets, dataclass instances and
    ``argparse.Namespace`` (both become dicts); anything else is returned as
    it is. A ``None`` or empty value under a secret key stays as it is, so a
    record still tells "no password was given" from "one was".
    """
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(k) and v not in (None, "", b"", False) and not isinstance(v, (Mapping, list, tuple))
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redact(v) for v in value]
        return items if isinstance(value, list) else tuple(items) if isinstance(value, tuple) else type(value)(items)
    return value


def live_secret_values() -> list[str]:
    """The text of every Secret alive in this process (long enough to search for), longest first."""
    with _live_lock:
        alive = list(_live)
    values = {_text(s.reveal()) for s in alive}
    return sorted((v for v in values if len(v) >= MIN_REDACTED), key=len, reverse=True)


def redact_text(text: str, extra: Iterable[str | bytes | Secret] = ()) -> str:
    """``text`` with the value of every live Secret, and of each of ``extra``, replaced by ``***``."""
    values = set(live_secret_values())
    values.update(v for v in (_text(reveal(e)) for e in extra) if len(v) >= MIN_REDACTED)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class SecretFilter(logging.Filter):
    """Redacts the values of live Secrets from every record it sees (message and arguments, formatted once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not live_secret_values():
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the handler's to report
            return True
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


TOKEN_BYTES = 32


def read_token_file(path: str | os.PathLike[str]) -> Secret:
    """The token in ``path`` (surrounding whitespace dropped); a clear error when it is missing, empty or readable by others."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"token file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"token file {path}: not UTF-8 text") from None
    if not text:
        raise ValueError(f"token file {path} is empty")
    if mode & 0o077:
        raise ValueError(f"token file {path} can be read by others (mode {mode & 0o777:o}): chmod 600 it")
    return Secret(text)


def new_token_file(path: str | os.PathLike[str]) -> Secret:
    """A new random token, written to ``path`` readable by its owner only (0600 from the start)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, (token + "\n").encode())
    return Secret(token)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only: 0600 from the start (not chmod afterwards), replaced atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
