"""CoRE Link Format (RFC 6690, content format 40) for Register and Discover.

Registration payload: ``</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>,</9>``;
Discover answer: ``</3/0>;pmin=10,</3/0/0>,</3/0/11>;dim=2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from .model import CodecError

LWM2M_ROOT_RT = "oma.lwm2m"

_WS = re.compile(r"[ \t\r\n]*")
_PARMNAME = re.compile(r"[A-Za-z0-9!#$&+.^_`|~*-]+")
_PTOKEN = re.compile(r"[^,;\s\"]+")
_ID = re.compile(r"[0-9]{1,5}")
_BARE_VALUE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@dataclass
class Link:
    path: str  # "/3/0", "/" or an alternate root such as "/lwm2m"
    attrs: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_links([self])


def _at(text: str, index: int, message: str) -> CodecError:
    return CodecError(message, len(text[:index].encode("utf-8")))


def parse_links(text: str | bytes) -> list[Link]:
    """Links of a link-format payload; whitespace around separators is tolerated."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"link format is not valid UTF-8 ({exc.reason})", exc.start) from None
    links: list[Link] = []
    i = _WS.match(text, 0).end()
    if i == len(text):
        return links
    while True:
        if i >= len(text) or text[i] != "<":
            raise _at(text, i, "expected '<' starting a link")
        close = text.find(">", i + 1)
        if close < 0:
            raise _at(text, i, "link target '<' has no closing '>'")
        link = Link(text[i + 1 : close])
        i = _WS.match(text, close + 1).end()
        while i < len(text) and text[i] == ";":
            i = _WS.match(text, i + 1).end()
            m = _PARMNAME.match(text, i)
            if not m:
                raise _at(text, i, "expected an attribute name after ';'")
            name, i = m[0], _WS.match(text, m.end()).end()
            value: str | None = None
            if i < len(text) and text[i] == "=":
                i = _WS.match(text, i + 1).end()
                value, i = _value(text, i)
                i = _WS.match(text, i).end()
            link.attrs[name] = value
        links.append(link)
        if i == len(text):
            return links
        if text[i] != ",":
            raise _at(text, i, f"expected ';', ',' or end after link <{link.path}>, got {text[i]!r}")
        i = _WS.match(text, i + 1).end()


def _value(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] == '"':
        out: list[str] = []
        j = i + 1
        while j < len(text):
            ch = text[j]
            if ch == "\\" and j + 1 < len(text):
                out.append(text[j + 1])
                j += 2
                continue
            if ch == '"':
                return "".join(out), j + 1
            out.append(ch)
            j += 1
        raise _at(text, i, "quoted attribute value has no closing '\"'")
    m = _PTOKEN.match(text, i)
    return (m[0], m.end()) if m else ("", i)


def _format_value(value: str) -> str:
    if _BARE_VALUE.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_links(links: Iterable[Link]) -> str:
    """Link-format text; numeric values bare (``ct=11542``), others quoted."""
    parts = []
    for link in links:
        if ">" in link.path:
            raise CodecError(f"link target {link.path!r} may not contain '>'")
        text = f"<{link.path}>"
        for name, value in link.attrs.items():
            if not _PARMNAME.fullmatch(name):
                raise CodecError(f"bad link attribute name {name!r} on <{link.path}>")
            text += f";{name}" if value is None else f";{name}={_format_value(str(value))}"
        parts.append(text)
    return ",".join(parts)


def registration_links(
    objects: dict[int, list[int]], versions: dict[int, str] | None = None, content_format: int | None = None
) -> str:
    """Register/Update payload: root link, then every object and its instances.

    ``content_format`` is announced on the root link (``</>;rt="oma.lwm2m";ct=112``):
    LwM2M 1.1 Core 6.2.1 lets a client name there the optional data format
    it supports, so it is one beyond the mandatory ones or nothing. An object
    without instances appears as ``</9>``; a version from ``versions`` adds
    ``</9>;ver=1.1`` ahead of the object's instances.
    """
    versions = versions or {}
    root: dict[str, str | None] = {"rt": LWM2M_ROOT_RT}
    if content_format is not None:
        root["ct"] = str(content_format)
    links = [Link("/", root)]
    for obj in sorted(objects):
        instances = sorted(objects[obj])
        if obj in versions:
            links.append(Link(f"/{obj}", {"ver": str(versions[obj])}))
        elif not instances:
            links.append(Link(f"/{obj}"))
        links.extend(Link(f"/{obj}/{inst}") for inst in instances)
    return format_links(links)


def available_instances(links: str | bytes | Iterable[Link]) -> dict[int, list[int]]:
    """``{object: [instances]}`` announced in a registration payload.

    The root link (``</>`` or an alternate root ``</path>;rt="oma.lwm2m"``)
    is skipped, and an alternate root prefix is stripped from the others.
    """
    if isinstance(links, (str, bytes, bytearray, memoryview)):
        links = parse_links(links)
    links = list(links)
    prefix = ""
    for link in links:
        rt = link.attrs.get("rt") or ""
        if LWM2M_ROOT_RT in rt.split():
            prefix = link.path.rstrip("/")
    out: dict[int, set[int]] = {}
    for link in links:
        path = link.path.rstrip("/")
        if path == prefix:
            continue
        if not path.startswith(prefix + "/"):
            raise CodecError(f"link <{link.path}> is outside the LwM2M root {prefix or '/'}")
        segments = path[len(prefix) + 1 :].split("/")
        if not all(_ID.fullmatch(s) for s in segments):
            raise CodecError(f"link <{link.path}>: expected /obj[/inst] with numeric ids")
        ids = [int(s) for s in segments]
        if any(not 0 <= n <= 0xFFFF for n in ids):
            raise CodecError(f"link <{link.path}>: ids must be 0..65535")
        instances = out.setdefault(ids[0], set())
        if len(ids) > 1:
            instances.add(ids[1])
    return {obj: sorted(insts) for obj, insts in sorted(out.items())}


def announced_formats(links: Iterable[Link]) -> tuple[int, ...]:
    """Content formats a client names with ``ct`` on its LwM2M root link, in its order.

    Both forms of RFC 7252 7.2.1 are read: ``ct=110`` and ``ct="110 112"``;
    values that are not numbers are skipped.
    """
    for link in links:
        rt = link.attrs.get("rt") or ""
        if link.path.rstrip("/") == "" or LWM2M_ROOT_RT in rt.split():
            ct = link.attrs.get("ct")
            if ct:
                return tuple(int(v) for v in ct.split() if v.isdigit())
    return ()
