"""text/plain (format 0) and application/octet-stream (format 42) for one value.

Plain text per LwM2M 1.1: integers and time as ASCII decimal, floats as the
shortest decimal that reads back to the same double, booleans "0"/"1",
object links "3:0", opaque as base64, strings as UTF-8.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import string
from typing import Any, Callable

from .model import CodecError, Content, ObjLnk, Path, ResourceType, resource_def, resource_type
from .tlv import as_objlnk, infer_type

TypeLookup = Callable[[Path], ResourceType]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OBJLNK = re.compile(r"([0-9]+):([0-9]+)")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# characters each form may contain, to point at the first stray one
_INT_CHARS = string.digits + "+-"
_FLOAT_CHARS = string.digits + "+-.eE"
_OBJLNK_CHARS = string.digits + ":"
_B64_CHARS = string.ascii_letters + string.digits + "+/="
_INT64 = range(-(1 << 63), 1 << 63)


def _single_value(content: Content, base: Path, fmt: str) -> Any:
    base = Path.parse(base)
    if base.res is None:
        raise CodecError(f"{fmt} carries one resource value; {base} is not a resource path")
    content = {Path.parse(k): v for k, v in content.items()}
    if base not in content:
        below = [k for k in content if base.contains(k)]
        if below:
            raise CodecError(
                f"{fmt} carries one value; {base} is a multiple resource with "
                f"{len(below)} instance(s): address one instance or use TLV/SenML"
            )
        raise CodecError(f"no value for {base} in the content")
    return content[base]


def encode_text(value: Any, rtype: ResourceType | None, where: Path) -> str:
    """Plain-text form of one value (``rtype`` None: infer from the Python type)."""
    if rtype is None:
        rtype = infer_type(value, where)
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise CodecError(f"{where}: integer expected, got {value!r}")
        return str(value)
    if rtype is ResourceType.FLOAT:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CodecError(f"{where}: float expected, got {value!r}")
        if not math.isfinite(value):
            raise CodecError(f"{where}: {value!r} has no plain-text form (finite decimal expected)")
        return repr(float(value))
    if rtype is ResourceType.BOOLEAN:
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise CodecError(f"{where}: boolean expected, got {value!r}")
        return "1" if value else "0"
    if rtype is ResourceType.OBJLNK:
        return str(as_objlnk(value, where))
    if rtype is ResourceType.OPAQUE:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise CodecError(f"{where}: bytes expected for an opaque resource, got {type(value).__name__}")
        return base64.b64encode(bytes(value)).decode("ascii")
    if rtype is ResourceType.STRING:
        if not isinstance(value, str):
            raise CodecError(f"{where}: string expected, got {value!r}")
        return value
    if rtype is ResourceType.NONE:
        if value not in (None, ""):
            raise CodecError(f"{where} is executable and carries no value, got {value!r}")
        return ""
    raise CodecError(f"{where}: unsupported resource type {rtype!r}")


def encode_content(content: Content, base: Path) -> bytes:
    base = Path.parse(base)
    value = _single_value(content, base, "text/plain")
    rd = resource_def(base)
    try:
        return encode_text(value, rd.type if rd else None, base).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CodecError(f"{base}: string is not encodable as UTF-8: {exc.reason}") from None


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _mismatch(text: str, pattern: re.Pattern[str], alphabet: str) -> int:
    """Byte offset where ``text`` stops being well formed: its first character
    outside ``alphabet``, else the end of its longest prefix ``pattern`` matches."""
    for i, ch in enumerate(text):
        if ch not in alphabet:
            return _byte_offset(text, i)
    for i in range(len(text), -1, -1):
        m = pattern.match(text[:i])
        if m and m.end() == i:
            return _byte_offset(text, i)
    return 0


def decode_text(text: str, rtype: ResourceType) -> Any:
    """Python value of plain text ``text`` for a resource of ``rtype``."""
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if not _INT.fullmatch(text):
            raise CodecError(
                f"{text!r} is not a decimal integer ({rtype.value} resource)",
                _mismatch(text, _INT, _INT_CHARS),
            )
        value = int(text)
        if value not in _INT64:
            raise CodecError(f"{text} does not fit in a 64-bit integer", 0)
        return value
    if rtype is ResourceType.FLOAT:
        if not _FLOAT.fullmatch(text):
            raise CodecError(
                f"{text!r} is not a decimal number (float resource)",
                _mismatch(text, _FLOAT, _FLOAT_CHARS),
            )
        value = float(text)
        if not math.isfinite(value):
            raise CodecError(f"{text} is out of the range of a double", 0)
        return value
    if rtype is ResourceType.BOOLEAN:
        if text not in ("0", "1"):
            raise CodecError(f"{text!r} is not a boolean: expected '0' or '1'", 0)
        return text == "1"
    if rtype is ResourceType.OBJLNK:
        m = _OBJLNK.fullmatch(text)
        if not m:
            raise CodecError(
                f"{text!r} is not an object link: expected 'OBJ:INST'",
                _mismatch(text, _OBJLNK, _OBJLNK_CHARS),
            )
        obj, inst = int(m[1]), int(m[2])
        if obj > 0xFFFF or inst > 0xFFFF:
            raise CodecError(f"object link {text} has a part above 65535", 0)
        return ObjLnk(obj, inst)
    if rtype is ResourceType.OPAQUE:
        return decode_base64(text)
    if rtype is ResourceType.NONE:
        if text:
            raise CodecError(f"executable resource carries text {text!r}: expected none", 0)
        return None
    return text


def decode_base64(text: str, offset: int = 0) -> bytes:
    if not _B64.fullmatch(text):
        raise CodecError(
            "base64 expected: only A-Z a-z 0-9 + / and trailing '='",
            offset + _mismatch(text, _B64, _B64_CHARS),
        )
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise CodecError(f"bad base64 ({exc}): length {len(text)} with its padding must be a multiple of 4",
                         offset + len(text)) from None


def decode_content(payload: bytes, base: Path, types: TypeLookup = resource_type) -> Content:
    base = Path.parse(base)
    if base.res is None:
        raise CodecError(f"text/plain carries one resource value; {base} is not a resource path")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"text is not valid UTF-8 ({exc.reason})", exc.start) from None
    res_path = Path(base.obj, base.inst, base.res)
    if types is resource_type and resource_def(res_path) is None:
        return {base: _natural(text)}
    return {base: decode_text(text, types(res_path))}


def _natural(text: str) -> Any:
    """A resource no definition knows: a number when the text is one, else the text itself."""
    if _INT.fullmatch(text) and int(text) in _INT64:
        return int(text)
    if _FLOAT.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    return text


def encode_opaque(content: Content, base: Path) -> bytes:
    base = Path.parse(base)
    value = _single_value(content, base, "application/octet-stream")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise CodecError(f"{base}: octet-stream needs a bytes value, got {type(value).__name__}")
    return bytes(value)


def decode_opaque(payload: bytes, base: Path) -> Content:
    base = Path.parse(base)
    if base.res is None:
        raise CodecError(f"octet-stream carries one resource value; {base} is not a resource path")
    return {base: bytes(payload)}
