"""LwM2M security modes and pre-shared keys, shared by the gateway and the simulated node.

The LwM2M Security object (/0) says per server how the client secures its
CoAP (resource 2, Security Mode: 0 PSK, 1 RPK, 2 certificate, 3 NoSec, 4
certificate with EST); in PSK mode resource 3 holds the PSK identity and
resource 5 the key. A DTLS-PSK endpoint is known by an identity (sent in the
clear in the handshake) and a key (never sent).

* ``--psk IDENTITY:HEXKEY`` (the node): :func:`parse_psk`.
* ``--psk-file FILE`` (the gateway), one line per secured endpoint,
  ``endpoint identity hexkey``, ``#`` comments and blank lines allowed:
  :func:`load_psk_table`.

Keys are :class:`~hil.secret.Secret` bytes: ``***`` wherever they are shown.
"""

from __future__ import annotations

import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from ..secret import Secret

SECURITY_OBJECT = 0
MODE_PSK = 0
MODE_NOSEC = 3
MAX_IDENTITY = 128  # bytes (RFC 4279 allows 2^16-1; tinydtls and real clients keep it short)
MIN_KEY, MAX_KEY = 4, 64  # bytes; tinydtls holds at most DTLS_PSK_MAX_KEY_LEN (32 by default)


class PskError(ValueError):
    """A pre-shared key given the wrong way; the message names where and what is wrong."""


@dataclass(frozen=True)
class PskCredential:
    identity: str
    key: Secret  # bytes

    @property
    def identity_bytes(self) -> bytes:
        return self.identity.encode("utf-8")

    @property
    def key_bytes(self) -> bytes:
        return bytes(self.key.reveal())


def _credential(identity: str, hexkey: str, where: str) -> PskCredential:
    if not identity:
        raise PskError(f"{where}: empty PSK identity")
    if len(identity.encode("utf-8")) > MAX_IDENTITY:
        raise PskError(f"{where}: PSK identity longer than {MAX_IDENTITY} bytes")
    try:
        key = binascii.unhexlify(hexkey)
    except (binascii.Error, ValueError):
        raise PskError(f"{where}: the key must be hexadecimal digits (an even number of them)") from None
    if not MIN_KEY <= len(key) <= min(MAX_KEY, 32):
        raise PskError(f"{where}: a key of {len(key)} bytes; DTLS-PSK here takes {MIN_KEY} to 32 bytes")
    return PskCredential(identity, Secret(key))


def parse_psk(text: str, where: str = "--psk") -> PskCredential:
    """``IDENTITY:HEXKEY`` (the identity may hold ':' itself; the key is what follows the last one)."""
    identity, sep, hexkey = text.rpartition(":")
    if not sep:
        raise PskError(f"{where}: expected IDENTITY:HEXKEY, e.g. node1-id:000102030405060708090a0b0c0d0e0f")
    return _credential(identity, hexkey, where)


@dataclass(frozen=True)
class PskTable:
    """Secured endpoints: endpoint name → its PSK credential. Identities are unique."""

    by_endpoint: dict[str, PskCredential]
    source: str = "<psk table>"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for endpoint, cred in self.by_endpoint.items():
            if cred.identity in seen:
                raise PskError(f"{self.source}: endpoints {seen[cred.identity]} and {endpoint} share the PSK identity "
                               f"{cred.identity!r}; the identity is what binds a DTLS session to one endpoint")
            seen[cred.identity] = endpoint

    @property
    def by_identity(self) -> dict[str, str]:
        """PSK identity → endpoint name."""
        return {cred.identity: endpoint for endpoint, cred in self.by_endpoint.items()}

    def __len__(self) -> int:
        return len(self.by_endpoint)

    def __repr__(self) -> str:
        return f"PskTable({len(self.by_endpoint)} endpoints from {self.source})"


def load_psk_table(path: str | os.PathLike[str]) -> PskTable:
    """Read ``endpoint identity hexkey`` lines (see the module docs)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PskError(f"PSK file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PskError(f"PSK file {path}: not UTF-8 text") from None
    table: dict[str, PskCredential] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"PSK file {path} line {number}"
        fields = line.split()
        if len(fields) != 3:
            raise PskError(f"{where}: expected 'endpoint identity hexkey', got {len(fields)} fields")
        endpoint, identity, hexkey = fields
        if endpoint in table:
            raise PskError(f"{where}: endpoint {endpoint} is listed twice")
        table[endpoint] = _credential(identity, hexkey, where)
    return PskTable(table, str(path))
