"""SDF names and values as NextGenGW shows LwM2M objects over MQTT.

Names: an object's or resource's SDF name is its OMA name (from the object
definitions) with spaces turned into underscores (``Device``,
``LWM2M_Software_Management``, ``Memory_Total``, ``IP_Addresses``), except the
Software Package objlnk of 35003, which NextGenGW spells ``Sofware_Package``.
Objects and resources without a definition go by their number.

Values: every property value is a string, as the kubelet and the node watcher
read them (``"Memory_Total": "256"``, ``"Group": "0"``, ``"CPU_Usage": "3"``).
An objlnk reads as ``<OMA object name>/<instance>`` (``Device/0``,
``LWM2M Software Management/1000``); a multiple resource with one instance is
that instance's string, with more it is a list of strings.

An object renders as ``{"<SdfObject>": [{"label": "<inst>", "sdfProperty": {...}}, ...]}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from ..lwm2m.model import (
    DEFINITIONS,
    Content,
    LwM2MError,
    ObjectDef,
    ObjLnk,
    Path,
    ResourceDef,
    ResourceType,
)

# The one resource whose SDF name is not derived from its OMA name.
NAME_QUIRKS: dict[tuple[int, int], str] = {(35003, 27400): "Sofware_Package"}

def _sdf(name: str) -> str:
    return name.replace(" ", "_")


_OBJECT_BY_SDF = {_sdf(od.name): od.id for od in DEFINITIONS.values()}


class SdfError(LwM2MError):
    """A name or value that does not map onto the LwM2M model; ``code`` is the CoAP code to answer with."""

    def __init__(self, message: str, code: int = 128):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- names


def object_name(obj: int) -> str:
    od = DEFINITIONS.get(obj)
    return _sdf(od.name) if od else str(obj)


def resource_name(obj: int, res: int) -> str:
    quirk = NAME_QUIRKS.get((obj, res))
    if quirk:
        return quirk
    od = DEFINITIONS.get(obj)
    rd = od.resource(res) if od else None
    return _sdf(rd.name) if rd else str(res)


def object_id(name: str) -> int:
    """Object id of an SDF object name (or a plain number); :class:`SdfError` 4.04 when unknown."""
    if name in _OBJECT_BY_SDF:
        return _OBJECT_BY_SDF[name]
    if name.isdigit() and int(name) <= 0xFFFF:
        return int(name)
    known = ", ".join(sorted(_OBJECT_BY_SDF))
    raise SdfError(f"unknown SDF object {name!r}; known objects: {known} (or an object number)", 132)


def resource_id(obj: int, name: str) -> int:
    """Resource id of a property/action name of ``obj`` (the OMA spelling of 27400 is accepted too)."""
    for (qobj, qres), quirk in NAME_QUIRKS.items():
        if qobj == obj and name == quirk:
            return qres
    od = DEFINITIONS.get(obj)
    if od:
        for rd in od.resources.values():
            if _sdf(rd.name) == name:
                return rd.id
    if name.isdigit() and int(name) <= 0xFFFF:
        return int(name)
    known = ", ".join(resource_name(obj, r) for r in od.resources) if od else "none defined"
    raise SdfError(f"{object_name(obj)} has no property or action {name!r}; it has: {known}", 132)


def instance_id(label: Any, where: str) -> int:
    text = str(label).strip()
    if not text.isdigit() or int(text) > 0xFFFE:
        raise SdfError(f"{where}: instance label {label!r} is not an instance number 0..65534")
    return int(text)


# --------------------------------------------------------------------------- values out


def value_text(value: Any) -> str:
    """One LwM2M value as the string NextGenGW shows."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ObjLnk):
        od = DEFINITIONS.get(value.obj)
        return f"{od.name if od else value.obj}/{value.inst}"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def render(content: Content, obj: int, instances: Iterable[int] = ()) -> dict[str, list[dict[str, Any]]]:
    """``{"<SdfObject>": [{"label": ..., "sdfProperty": {...}}]}`` for decoded ``content`` of one object.

    ``instances`` adds label-only entries for instances known to exist
    (from the registration) that the content does not cover.
    """
    by_instance: dict[int, dict[int, Any]] = {}
    for path, value in sorted(content.items(), key=lambda kv: tuple(-1 if p is None else p for p in kv[0])):
        if path.obj != obj or path.inst is None or path.res is None:
            continue
        resources = by_instance.setdefault(path.inst, {})
        if path.ri is None:
            resources[path.res] = value
        else:
            multi = resources.setdefault(path.res, {})
            if isinstance(multi, dict):
                multi[path.ri] = value
    for inst in instances:
        by_instance.setdefault(inst, {})
    entries = []
    for inst in sorted(by_instance):
        entry: dict[str, Any] = {"label": str(inst)}
        props = {resource_name(obj, res): _property_text(v) for res, v in by_instance[inst].items()}
        if props:
            entry["sdfProperty"] = props
        entries.append(entry)
    return {object_name(obj): entries}


def _property_text(value: Any) -> str | list[str]:
    if isinstance(value, dict):
        texts = [value_text(value[ri]) for ri in sorted(value)]
        return texts[0] if len(texts) == 1 else texts
    return value_text(value)


# --------------------------------------------------------------------------- values in


def parse_value(path: Path, value: Any) -> Any:
    """An SDF value (JSON, often a string) as the Python value for the resource at ``path``."""
    rd = _definition(path)
    rtype = rd.type if rd else _guess_type(value)
    where = f"{object_name(path.obj)}/{path.inst}/{resource_name(path.obj, path.res or 0)}"
    try:
        return _convert(rtype, value)
    except (TypeError, ValueError, LwM2MError) as exc:
        raise SdfError(f"{where}: {value!r} is not a valid {rtype.value} value ({exc})") from None


def _definition(path: Path) -> ResourceDef | None:
    od: ObjectDef | None = DEFINITIONS.get(path.obj)
    return od.resource(path.res) if od and path.res is not None else None


def _guess_type(value: Any) -> ResourceType:
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, (dict, list)):
        return ResourceType.OPAQUE
    return ResourceType.STRING


def _convert(rtype: ResourceType, value: Any) -> Any:
    if rtype is ResourceType.OPAQUE:
        if isinstance(value, (dict, list)):
            # an object (service.json) is written as its JSON text, as the kubelet sends it
            return json.dumps(value, separators=(",", ":")).encode("utf-8")
        return str(value).encode("utf-8")
    if isinstance(value, (dict, list)):
        if rtype is ResourceType.STRING:
            return json.dumps(value, separators=(",", ":"))
        if rtype is ResourceType.OBJLNK and isinstance(value, dict):
            return ObjLnk(int(value["objectId"]), int(value["objectInstanceId"]))
        raise TypeError(f"a JSON {type(value).__name__} cannot be a {rtype.value}")
    if rtype is ResourceType.STRING:
        return value_text(value)
    if rtype is ResourceType.BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError("expected true or false")
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if isinstance(value, bool):
            raise TypeError("a boolean is not an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("not a whole number")
            return int(value)
        return int(str(value).strip())
    if rtype is ResourceType.FLOAT:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        return float(value)
    if rtype is ResourceType.OBJLNK:
        return _objlnk(str(value))
    raise TypeError(f"{rtype.value} resources take no value")


def _objlnk(text: str) -> ObjLnk:
    if ":" in text:
        return ObjLnk.parse(text)
    name, sep, inst = text.rpartition("/")
    if not sep:
        raise ValueError("expected OBJ:INST or '<object name>/<instance>'")
    for od in DEFINITIONS.values():
        if name in (od.name, _sdf(od.name)):
            return ObjLnk(od.id, int(inst))
    return ObjLnk(int(name), int(inst))
