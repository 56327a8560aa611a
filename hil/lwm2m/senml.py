"""SenML JSON (content format 110) as LwM2M 1.1 uses it, and what SenML CBOR shares with it.

A pack is a JSON array of records; a record's name is the current base name
``bn`` (which persists until a later record changes it) followed by its
relative name ``n``. Values: ``v`` number (also time), ``vs`` string, ``vb``
bool, ``vd`` base64url opaque without padding, ``vlo`` object link "3:0".
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Callable, Iterable, Iterator

from .model import CodecError, Content, LwM2MError, ObjLnk, Path, ResourceType, resource_def, resource_type
from .tlv import as_objlnk, infer_type

TypeLookup = Callable[[Path], ResourceType]

_VALUE_FIELDS = ("v", "vs", "vb", "vd", "vlo")
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_OBJLNK = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_INT64 = range(-(1 << 63), 1 << 63)


# --------------------------------------------------------------------------
# encode


def _value_field(value: Any, rtype: ResourceType | None, where: Path) -> tuple[str, Any] | None:
    if rtype is None:
        rtype = infer_type(value, where)
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise CodecError(f"{where}: integer expected, got {value!r}")
        return "v", int(value)
    if rtype is ResourceType.FLOAT:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CodecError(f"{where}: float expected, got {value!r}")
        if not math.isfinite(value):
            raise CodecError(f"{where}: {value!r} has no JSON form (finite number expected)")
        return "v", float(value)
    if rtype is ResourceType.BOOLEAN:
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise CodecError(f"{where}: boolean expected, got {value!r}")
        return "vb", bool(value)
    if rtype is ResourceType.STRING:
        if not isinstance(value, str):
            raise CodecError(f"{where}: string expected, got {value!r}")
        return "vs", value
    if rtype is ResourceType.OPAQUE:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise CodecError(f"{where}: bytes expected for an opaque resource, got {type(value).__name__}")
        return "vd", bytes(value)
    if rtype is ResourceType.OBJLNK:
        return "vlo", str(as_objlnk(value, where))
    if rtype is ResourceType.NONE:
        if value is not None:
            raise CodecError(f"{where} is executable and carries no value, got {value!r}")
        return None
    raise CodecError(f"{where}: unsupported resource type {rtype!r}")


def encode_records(content: Content, base: Path | None) -> list[dict[str, Any]]:
    """SenML records for ``content`` at ``base``: dicts keyed by SenML label, ``vd`` as bytes.

    ``base`` None (a composite answer or a Send) names every record in full.
    """
    content = {Path.parse(k): v for k, v in content.items()}
    for key in content:
        if key.res is None:
            raise CodecError(f"content key {key} is not a resource or resource instance path")
        if base is not None and not Path.parse(base).contains(key):
            raise CodecError(f"content key {key} is not below the base path {base}")
    records: list[dict[str, Any]] = []
    if base is None:
        return [_with_value({"n": str(key)}, key, content[key]) for key in sorted(content)]
    base = Path.parse(base)
    if list(content) == [base]:
        bn, keys = str(base), [base]
    else:
        bn, keys = str(base).rstrip("/") + "/", sorted(content)
    for key in keys:
        record: dict[str, Any] = {}
        if not records:
            record["bn"] = bn
        rel = "/".join(key.segments()[base.depth :])
        if rel:
            record["n"] = rel
        records.append(_with_value(record, key, content[key]))
    return records


def _with_value(record: dict[str, Any], key: Path, value: Any) -> dict[str, Any]:
    rd = resource_def(key)
    field = _value_field(value, rd.type if rd else None, key)
    if field is not None:
        record[field[0]] = field[1]
    return record


def encode_content(content: Content, base: Path) -> bytes:
    records = encode_records(content, base)
    for record in records:
        if "vd" in record:
            record["vd"] = base64.urlsafe_b64encode(record["vd"]).decode("ascii").rstrip("=")
    return json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_paths(paths: list[Path]) -> bytes:
    """The request payload of Read-/Observe-Composite: one record naming each path."""
    return json.dumps([{"n": str(Path.parse(p))} for p in paths], separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------
# decode


def _records(text: str) -> list[tuple[int, Any]]:
    """(character index, parsed value) of each element of the top-level array."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")

    def skip(i: int) -> int:
        return ws.match(text, i).end()

    i = skip(0)
    if i >= len(text) or text[i] != "[":
        raise _at(text, i, "SenML JSON pack must be a JSON array: expected '['")
    i = skip(i + 1)
    out: list[tuple[int, Any]] = []
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise _at(text, exc.pos, f"bad JSON: {exc.msg}") from None
            out.append((i, value))
            i = skip(end)
            if i < len(text) and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < len(text) and text[i] == "]":
                i += 1
                break
            raise _at(text, i, "expected ',' or ']' after a SenML record")
    if skip(i) != len(text):
        raise _at(text, skip(i), "trailing data after the SenML array")
    return out


def _at(text: str, index: int, message: str) -> CodecError:
    return CodecError(message, len(text[:index].encode("utf-8")))


def decode_content(payload: bytes, base: Path | None, types: TypeLookup = resource_type) -> Content:
    """Flat content of a SenML JSON pack; every record must lie below ``base``.

    ``base`` None accepts any path (a Read-Composite answer spans objects).
    """
    text = _utf8(payload)
    return content_of(((pos, record) for pos, record in _records(text)), base, types, lambda pos, m: _at(text, pos, m))


def decode_paths(payload: bytes) -> list[Path]:
    """The paths a Read-/Observe-Composite request names (records with a name and no value)."""
    text = _utf8(payload)
    return paths_of(_records(text), lambda pos, m: _at(text, pos, m))


def _utf8(payload: bytes) -> str:
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"SenML JSON is not valid UTF-8 ({exc.reason})", exc.start) from None


# --------------------------------------------------------------------------
# shared by SenML JSON and SenML CBOR: records (label -> value) to content

Fail = Callable[[Any, str], CodecError]  # (where the record is, message) -> error to raise


def _names(records: Iterable[tuple[Any, Any]], fail: Fail, record_kind: str) -> Iterator[tuple[Any, int, dict[str, Any], str, float | int]]:
    """(position, index, record, full name, base value in force) of each record."""
    bn = ""
    bv: float | int = 0
    for index, (pos, record) in enumerate(records):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise fail(pos, f"{where}: a SenML record must be a {record_kind}, got {type(record).__name__}")
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise fail(pos, f"{where}: bn must be a string, got {record['bn']!r}")
            bn = record["bn"]
        if "bv" in record:
            if not _is_number(record["bv"]):
                raise fail(pos, f"{where}: bv must be a number, got {record['bv']!r}")
            bv = record["bv"]
        n = record.get("n", "")
        if not isinstance(n, str):
            raise fail(pos, f"{where}: n must be a string, got {n!r}")
        name = bn + n
        if not name:
            raise fail(pos, f"{where}: SenML record without name (no bn in force and no n)")
        yield pos, index, record, name, bv


def _path(name: str, pos: Any, where: str, fail: Fail) -> Path:
    try:
        path = Path.parse(name)
    except LwM2MError as exc:
        raise fail(pos, f"{where}: {exc}") from None
    if not name.startswith("/"):
        raise fail(pos, f"{where}: name {name!r} must be an absolute path")
    return path


def content_of(
    records: Iterable[tuple[Any, Any]], base: Path | None, types: TypeLookup, fail: Fail, record_kind: str = "JSON object"
) -> Content:
    """Flat content of decoded SenML records (``vd`` a base64url string or bytes)."""
    base = None if base is None else Path.parse(base)
    out: Content = {}
    for pos, index, record, name, bv in _names(records, fail, record_kind):
        where = f"record {index}"
        path = _path(name, pos, where, fail)
        if path.res is None:
            raise fail(pos, f"{where}: name {name!r} must be an absolute resource or resource instance path")
        if base is not None and not base.contains(path):
            raise fail(pos, f"{where}: {path} is not below the requested path {base}")
        if path in out:
            raise fail(pos, f"{where}: {path} appears twice")
        rtype = types(Path(path.obj, path.inst, path.res))
        try:
            out[path] = _record_value(record, rtype, bv)
        except ValueError as exc:
            raise fail(pos, f"{where} ({path}): {exc}") from None
    return out


def paths_of(records: Iterable[tuple[Any, Any]], fail: Fail, record_kind: str = "JSON object") -> list[Path]:
    """Paths named by records without values (a composite request); at least one."""
    out: list[Path] = []
    for pos, index, record, name, _ in _names(records, fail, record_kind):
        where = f"record {index}"
        present = [f for f in _VALUE_FIELDS if f in record]
        if present:
            raise fail(pos, f"{where}: a composite request names paths only, got {', '.join(present)}")
        path = _path(name, pos, where, fail)
        if path in out:
            raise fail(pos, f"{where}: {path} appears twice")
        out.append(path)
    if not out:
        raise fail(0, "a composite request must name at least one path")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_value(record: dict[str, Any], rtype: ResourceType, bv: float | int) -> Any:
    """Value of a record; ValueError names what is wrong."""
    present = [f for f in _VALUE_FIELDS if f in record]
    if len(present) > 1:
        raise ValueError(f"a record carries one value, found {', '.join(present)}")
    if not present:
        if rtype is ResourceType.NONE:
            return None
        raise ValueError("no value: expected one of v, vs, vb, vd, vlo")
    field = present[0]
    raw = record[field]
    # Unknown resources default to OPAQUE; then the record's own field decides.
    natural = rtype is ResourceType.OPAQUE and field != "vd"
    if field == "v":
        if not _is_number(raw):
            raise ValueError(f"v must be a number, got {raw!r}")
        raw = raw + bv
        if rtype in (ResourceType.INTEGER, ResourceType.TIME):
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError(f"{rtype.value} resource needs an integral v, got {raw!r}")
                raw = int(raw)
            if raw not in _INT64:
                raise ValueError(f"{raw} does not fit in a 64-bit integer")
            return raw
        if rtype is ResourceType.FLOAT:
            return float(raw)
        if natural:
            return raw
        raise ValueError(f"v given but the resource is {rtype.value}: expected {_FIELD_FOR.get(rtype, 'no value')}")
    if field == "vs":
        if not isinstance(raw, str):
            raise ValueError(f"vs must be a string, got {raw!r}")
        if rtype is ResourceType.STRING or natural:
            return raw
    elif field == "vb":
        if not isinstance(raw, bool):
            raise ValueError(f"vb must be true or false, got {raw!r}")
        if rtype is ResourceType.BOOLEAN or natural:
            return raw
    elif field == "vd":
        if isinstance(raw, (bytes, bytearray)):  # SenML CBOR carries a byte string
            if rtype is ResourceType.OPAQUE:
                return bytes(raw)
        elif not isinstance(raw, str):
            raise ValueError(f"vd must be a base64url string, got {raw!r}")
        elif rtype is ResourceType.OPAQUE:
            return _b64url(raw)
    elif field == "vlo":
        m = _OBJLNK.fullmatch(raw) if isinstance(raw, str) else None
        if not m or int(m[1]) > 0xFFFF or int(m[2]) > 0xFFFF:
            raise ValueError(f"vlo must be 'OBJ:INST' with parts 0..65535, got {raw!r}")
        if rtype is ResourceType.OBJLNK or natural:
            return ObjLnk(int(m[1]), int(m[2]))
    raise ValueError(f"{field} given but the resource is {rtype.value}: expected {_FIELD_FOR.get(rtype, 'no value')}")


_FIELD_FOR = {
    ResourceType.INTEGER: "v",
    ResourceType.TIME: "v",
    ResourceType.FLOAT: "v",
    ResourceType.STRING: "vs",
    ResourceType.BOOLEAN: "vb",
    ResourceType.OPAQUE: "vd",
    ResourceType.OBJLNK: "vlo",
}


def _b64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError(f"vd is not base64url (A-Z a-z 0-9 - _): {text[:40]!r}")
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise ValueError(f"vd of {len(stripped)} base64url characters is not a whole number of bytes")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except binascii.Error as exc:
        raise ValueError(f"vd is not base64url: {exc}") from None
