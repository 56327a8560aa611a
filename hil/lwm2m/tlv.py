"""OMA LwM2M TLV (content format 11542, and 1542 on input).

Each TLV is a types byte, an 8- or 16-bit identifier, an optional 8/16/24-bit
length field and the value. Types byte: bits 7-6 identifier kind, bit 5 set
for a 16-bit identifier, bits 4-3 width of the length field (0 means the
length sits in bits 2-0).
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Any, Callable

from .model import (
    DEFINITIONS,
    CodecError,
    Content,
    LwM2MError,
    ObjLnk,
    Path,
    ResourceType,
    resource_def,
    resource_type,
    value_type,
)

TypeLookup = Callable[[Path], ResourceType]


class Kind(enum.IntEnum):
    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE = 0b11


# Depth of the path segment each kind's identifier fills (obj=1 .. ri=4).
_LEVEL = {
    Kind.OBJECT_INSTANCE: 2,
    Kind.MULTIPLE_RESOURCE: 3,
    Kind.RESOURCE: 3,
    Kind.RESOURCE_INSTANCE: 4,
}
_KIND_NAME = {
    Kind.OBJECT_INSTANCE: "Object Instance TLV",
    Kind.RESOURCE_INSTANCE: "Resource Instance TLV",
    Kind.MULTIPLE_RESOURCE: "Multiple Resource TLV",
    Kind.RESOURCE: "Resource TLV",
}


# --------------------------------------------------------------------------
# values


def encode_int(value: int) -> bytes:
    """Shortest of 1/2/4/8 bytes two's complement that holds ``value``."""
    for size in (1, 2, 4, 8):
        if -(1 << (8 * size - 1)) <= value < (1 << (8 * size - 1)):
            return value.to_bytes(size, "big", signed=True)
    raise CodecError(f"integer {value} does not fit in 64 bits")


def encode_float(value: float) -> bytes:
    """4 bytes when float32 holds the value exactly, else 8."""
    try:
        single = struct.pack(">f", value)
    except OverflowError:
        return struct.pack(">d", value)
    back = struct.unpack(">f", single)[0]
    if back == value or (math.isnan(back) and math.isnan(value)):
        return single
    return struct.pack(">d", value)


def encode_value(value: Any, rtype: ResourceType | None, where: Path) -> bytes:
    """Bytes of one value; ``rtype`` None means: infer from the Python type."""
    if rtype is None:
        rtype = infer_type(value, where)
    try:
        if rtype is ResourceType.NONE:
            if value not in (None, b""):
                raise CodecError(f"{where} is executable and carries no value, got {value!r}")
            return b""
        if rtype is ResourceType.BOOLEAN:
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise CodecError(f"{where}: boolean expected, got {value!r}")
            return b"\x01" if value else b"\x00"
        if rtype in (ResourceType.INTEGER, ResourceType.TIME):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise CodecError(f"{where}: integer expected, got {value!r}")
            return encode_int(int(value))
        if rtype is ResourceType.FLOAT:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise CodecError(f"{where}: float expected, got {value!r}")
            return encode_float(float(value))
        if rtype is ResourceType.STRING:
            if not isinstance(value, str):
                raise CodecError(f"{where}: string expected, got {value!r}")
            return value.encode("utf-8")
        if rtype is ResourceType.OPAQUE:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise CodecError(f"{where}: bytes expected for an opaque resource, got {type(value).__name__}")
            return bytes(value)
        if rtype is ResourceType.OBJLNK:
            return struct.pack(">HH", *as_objlnk(value, where))
    except (struct.error, TypeError, ValueError) as exc:
        raise CodecError(f"{where}: cannot encode {value!r} as {rtype.value}: {exc}") from None
    except UnicodeEncodeError as exc:
        raise CodecError(f"{where}: string is not encodable as UTF-8: {exc.reason}") from None
    raise CodecError(f"{where}: unsupported resource type {rtype!r}")


def as_objlnk(value: Any, where: Path) -> ObjLnk:
    """``value`` (an ObjLnk, a 2-tuple or "3:0") as an ObjLnk with 16-bit parts."""
    if isinstance(value, str):
        try:
            value = ObjLnk.parse(value)
        except LwM2MError as exc:
            raise CodecError(f"{where}: {exc}") from None
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise CodecError(f"{where}: object link expected, got {value!r}")
    if not all(0 <= v <= 0xFFFF for v in value):
        raise CodecError(f"{where}: object link {value[0]}:{value[1]} has a part outside 0..65535")
    return ObjLnk(*value)


def infer_type(value: Any, where: Path) -> ResourceType:
    if value is None:
        return ResourceType.NONE
    rtype = value_type(value)
    if rtype is None:
        raise CodecError(f"{where}: no LwM2M type for a {type(value).__name__} value {value!r}")
    return rtype


def decode_value(data: bytes, rtype: ResourceType, offset: int) -> Any:
    """Python value of ``data`` (which starts at ``offset`` in the payload)."""
    n = len(data)
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if n not in (1, 2, 4, 8):
            raise CodecError(f"{rtype.value} of length {n}: expected 1, 2, 4 or 8 bytes", offset)
        return int.from_bytes(data, "big", signed=True)
    if rtype is ResourceType.FLOAT:
        if n == 4:
            return struct.unpack(">f", data)[0]
        if n == 8:
            return struct.unpack(">d", data)[0]
        raise CodecError(f"float of length {n}: expected 4 or 8 bytes", offset)
    if rtype is ResourceType.BOOLEAN:
        if n != 1:
            raise CodecError(f"boolean of length {n}: expected 1 byte", offset)
        if data[0] > 1:
            raise CodecError(f"boolean byte 0x{data[0]:02x}: expected 0x00 or 0x01", offset)
        return data[0] == 1
    if rtype is ResourceType.OBJLNK:
        if n != 4:
            raise CodecError(f"object link of length {n}: expected 4 bytes", offset)
        return ObjLnk(*struct.unpack(">HH", data))
    if rtype is ResourceType.STRING:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"string is not valid UTF-8 ({exc.reason})", offset + exc.start) from None
    if rtype is ResourceType.NONE:
        if n:
            raise CodecError(f"executable resource carries {n} value bytes: expected none", offset)
        return None
    return bytes(data)


# --------------------------------------------------------------------------
# framing


@dataclass(frozen=True)
class Tlv:
    kind: Kind
    id: int
    start: int  # offset of the types byte
    value_start: int
    value_end: int


def _header(kind: Kind, ident: int, length: int) -> bytes:
    if not 0 <= ident <= 0xFFFF:
        raise CodecError(f"TLV identifier {ident} does not fit in 16 bits")
    types = kind << 6
    if ident > 0xFF:
        types |= 0x20
        id_bytes = ident.to_bytes(2, "big")
    else:
        id_bytes = bytes([ident])
    if length < 8:
        return bytes([types | length]) + id_bytes
    for width in (1, 2, 3):
        if length < 1 << (8 * width):
            return bytes([types | (width << 3)]) + id_bytes + length.to_bytes(width, "big")
    raise CodecError(f"TLV value of {length} bytes exceeds the 24-bit length field")


def frame(kind: Kind, ident: int, value: bytes) -> bytes:
    return _header(kind, ident, len(value)) + value


def split(payload: bytes, start: int = 0, end: int | None = None) -> list[Tlv]:
    """The TLVs laid out back to back in ``payload[start:end]``."""
    end = len(payload) if end is None else end
    out: list[Tlv] = []
    pos = start
    while pos < end:
        here = pos
        types = payload[pos]
        pos += 1
        id_len = 2 if types & 0x20 else 1
        if end - pos < id_len:
            raise CodecError(f"TLV identifier needs {id_len} bytes, {end - pos} left", pos)
        ident = int.from_bytes(payload[pos : pos + id_len], "big")
        pos += id_len
        len_width = (types >> 3) & 0x03
        if len_width == 0:
            length = types & 0x07
        else:
            if end - pos < len_width:
                raise CodecError(f"TLV length field needs {len_width} bytes, {end - pos} left", pos)
            length = int.from_bytes(payload[pos : pos + len_width], "big")
            pos += len_width
        if end - pos < length:
            raise CodecError(f"TLV value needs {length} bytes, {end - pos} left", pos)
        out.append(Tlv(Kind(types >> 6), ident, here, pos, pos + length))
        pos += length
    return out


# --------------------------------------------------------------------------
# content


def _is_multiple(res_path: Path, keys: list[Path]) -> bool:
    if any(k.ri is not None for k in keys):
        return True
    rd = resource_def(res_path)
    return bool(rd and rd.multiple)


def _resource_tlv(res_path: Path, content: Content) -> bytes:
    keys = sorted(k for k in content if k[:3] == res_path[:3])
    rd = resource_def(res_path)
    rtype = rd.type if rd else None
    if not _is_multiple(res_path, keys):
        return frame(Kind.RESOURCE, res_path.res, encode_value(content[res_path], rtype, res_path))
    if res_path in content:
        raise CodecError(
            f"{res_path} is a multiple resource: give its values by resource instance "
            f"(Path({res_path.obj}, {res_path.inst}, {res_path.res}, ri)), not as one value"
        )
    inner = b"".join(frame(Kind.RESOURCE_INSTANCE, k.ri, encode_value(content[k], rtype, k)) for k in keys)
    return frame(Kind.MULTIPLE_RESOURCE, res_path.res, inner)


def _instance_body(inst_path: Path, content: Content) -> bytes:
    resources = sorted({Path(k.obj, k.inst, k.res) for k in content if k[:2] == inst_path[:2]})
    return b"".join(_resource_tlv(r, content) for r in resources)


def encode_content(content: Content, base: Path) -> bytes:
    """TLV for ``content`` read or written at ``base``."""
    base = Path.parse(base)
    content = {Path.parse(k): v for k, v in content.items()}
    for key in content:
        if key.res is None:
            raise CodecError(f"content key {key} is not a resource or resource instance path")
        if not base.contains(key):
            raise CodecError(f"content key {key} is not below the base path {base}")

    if base.depth == 1:
        instances = sorted({Path(k.obj, k.inst) for k in content})
        return b"".join(frame(Kind.OBJECT_INSTANCE, i.inst, _instance_body(i, content)) for i in instances)
    if base.depth == 2:
        return _instance_body(base, content)
    if base.depth == 3:
        if not content:
            raise CodecError(f"no value for {base} in the content")
        return _resource_tlv(base, content)
    if base not in content:
        raise CodecError(f"no value for {base} in the content")
    rd = resource_def(base)
    return frame(Kind.RESOURCE_INSTANCE, base.ri, encode_value(content[base], rd.type if rd else None, base))


def decode_content(payload: bytes, base: Path, types: TypeLookup = resource_type) -> Content:
    """Flat content from a TLV payload addressed to ``base``.

    Accepts any nesting a peer may send: Object Instance TLVs at an object
    or (repeating the id) instance base, Resource TLVs at an instance or
    (repeating the id) resource base, Resource Instance TLVs at a resource
    base, and Resource TLVs straight under a single-instance object base.
    """
    base = Path.parse(base)
    payload = bytes(payload)
    out: Content = {}
    prefix = tuple(p for p in base if p is not None)
    for tlv in split(payload):
        _decode_top(payload, tlv, prefix, types, out)
    return out


def _decode_top(payload: bytes, tlv: Tlv, prefix: tuple[int, ...], types: TypeLookup, out: Content) -> None:
    level = _LEVEL[tlv.kind]
    depth = len(prefix)
    if level == depth + 1:
        at = prefix
    elif level == depth and depth >= 2:
        # the peer repeated the node the request addressed
        if tlv.id != prefix[-1]:
            raise CodecError(
                f"{_KIND_NAME[tlv.kind]} id {tlv.id} does not match the requested path {Path(*prefix)}",
                tlv.start,
            )
        at = prefix[:-1]
    elif depth == 1 and level == 3 and _single_instance(prefix[0]):
        # LwM2M 1.0 peers may omit the Object Instance TLV of a single-instance object
        at = (prefix[0], 0)
    else:
        raise CodecError(f"{_KIND_NAME[tlv.kind]} (id {tlv.id}) is not expected at {Path(*prefix)}", tlv.start)
    _decode_node(payload, tlv, at, types, out)


def _single_instance(obj: int) -> bool:
    od = DEFINITIONS.get(obj)
    return od is None or not od.multiple


def _decode_node(payload: bytes, tlv: Tlv, parent: tuple[int, ...], types: TypeLookup, out: Content) -> None:
    """Decode ``tlv`` whose identifier is the next segment after ``parent``."""
    here = parent + (tlv.id,)
    if tlv.kind in (Kind.RESOURCE, Kind.RESOURCE_INSTANCE):
        path = Path(*here)
        if path in out:
            raise CodecError(f"{path} appears twice", tlv.start)
        rtype = types(Path(*here[:3]))
        out[path] = decode_value(payload[tlv.value_start : tlv.value_end], rtype, tlv.value_start)
        return
    child_kind = Kind.RESOURCE_INSTANCE if tlv.kind is Kind.MULTIPLE_RESOURCE else None
    for child in split(payload, tlv.value_start, tlv.value_end):
        if child_kind is not None:
            ok = child.kind is child_kind
            expected = _KIND_NAME[child_kind]
        else:
            ok = child.kind in (Kind.RESOURCE, Kind.MULTIPLE_RESOURCE)
            expected = "Resource or Multiple Resource TLV"
        if not ok:
            raise CodecError(
                f"{_KIND_NAME[child.kind]} inside the {_KIND_NAME[tlv.kind]} of {Path(*here)}: expected {expected}",
                child.start,
            )
        _decode_node(payload, child, here, types, out)
