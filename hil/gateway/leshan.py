"""Leshan's JSON shapes: registrations, LwM2M nodes and response envelopes.

What FITA's kubelet and node watcher read in their "leshan" mode:

* a registration: ``endpoint``, ``registrationId``, ``registrationDate`` and
  ``lastUpdate`` (epoch milliseconds, numbers: the kubelet decodes them as
  int64), ``address``, ``lifetime``, ``lwM2mVersion``, ``bindingMode``,
  ``rootPath``, ``objectLinks`` (``[{"url": "/9", "attributes": {}}]``),
  ``availableInstances`` (``{"9": [1000]}``, every registered object, empty
  list when it has no instances), ``secure``, ``queuemode``;
* a node: ``{"kind": "singleResource", "id", "type", "value"}``,
  ``{"kind": "multiResource", "id", "type", "values": {"0": v}}``,
  ``{"kind": "instance", "id", "resources": [...]}``, ``{"kind": "obj", "id", "instances": [...]}``.
  Types are Leshan's upper-case names, from the object definitions, or for
  a resource they do not know the type the decoded value carries (a SenML
  ``v`` is a number, never OPAQUE); opaque values are hex, objlnk values
  ``{"objectId": 9, "objectInstanceId": 1000}``, time values epoch milliseconds;
* every answer: ``{"status": "CONTENT", "valid": true, "success": true, "failure": false, "content": ...}``.
"""

from __future__ import annotations

from typing import Any

from ..lwm2m.model import Content, LwM2MError, ObjLnk, Path, ResourceType, resource_def, value_type
from .registry import Registration

STATUS_NAMES = {
    65: "CREATED", 66: "DELETED", 67: "VALID", 68: "CHANGED", 69: "CONTENT", 95: "CONTINUE",
    128: "BAD_REQUEST", 129: "UNAUTHORIZED", 130: "BAD_OPTION", 131: "FORBIDDEN", 132: "NOT_FOUND",
    133: "METHOD_NOT_ALLOWED", 134: "NOT_ACCEPTABLE", 136: "REQUEST_ENTITY_INCOMPLETE", 140: "PRECONDITION_FAILED",
    141: "REQUEST_ENTITY_TOO_LARGE", 143: "UNSUPPORTED_CONTENT_FORMAT",
    160: "INTERNAL_SERVER_ERROR", 161: "NOT_IMPLEMENTED", 162: "BAD_GATEWAY", 163: "SERVICE_UNAVAILABLE",
    164: "GATEWAY_TIMEOUT", 165: "PROXY_NOT_SUPPORTED",
}

TYPE_NAMES = {t: t.value.upper() for t in ResourceType}


class NodeError(LwM2MError):
    """A JSON node in a request body that does not fit the path or the model."""


def status_name(code_number: int) -> str:
    return STATUS_NAMES.get(code_number, f"CODE_{code_number >> 5}_{code_number & 31:02d}")


def envelope(code_number: int, content: Any = None, error: str | None = None) -> dict[str, Any]:
    success = 64 <= code_number < 96
    body: dict[str, Any] = {"status": status_name(code_number), "valid": True, "success": success, "failure": not success}
    if content is not None:
        body["content"] = content
    if error:
        body["errormessage"] = error
    return body


def registration_json(reg: Registration) -> dict[str, Any]:
    return {
        "endpoint": reg.endpoint,
        "registrationId": reg.registration_id,
        "registrationDate": int(reg.registered_at * 1000),
        "lastUpdate": int(reg.updated_at * 1000),
        "address": reg.address_text,
        "lwM2mVersion": reg.lwm2m_version,
        "lifetime": reg.lifetime,
        "bindingMode": reg.binding,
        "rootPath": (reg.root_path or "") + "/",
        "objectLinks": [{"url": link.path, "attributes": dict(link.attrs)} for link in reg.object_links],
        "secure": False,
        "additionalRegistrationAttributes": {},
        "queuemode": reg.queue_mode,
        "availableInstances": {str(obj): insts for obj, insts in reg.available_instances.items()},
        # not Leshan's: whether the gateway can reach the device now, and what it saw when it could not
        "reachable": reg.reachable,
        "unreachableReason": reg.unreachable_reason,
    }


# --------------------------------------------------------------------------- content -> node


def node_json(content: Content, path: Path) -> dict[str, Any] | None:
    """The Leshan node for what a read of ``path`` returned (None when it returned nothing)."""
    if path.inst is None:
        instances = sorted({p.inst for p in content if p.inst is not None})
        return {"kind": "obj", "id": path.obj, "instances": [_instance(content, path.obj, i) for i in instances]}
    if path.res is None:
        return _instance(content, path.obj, path.inst)
    if path.ri is not None:
        if path not in content:
            return None
        return {"kind": "resourceInstance", "id": path.ri, "type": _type_name(path, content[path]), "value": _value_json(content[path], path)}
    return _resource(content, Path(path.obj, path.inst, path.res))


def _instance(content: Content, obj: int, inst: int) -> dict[str, Any]:
    resources = sorted({p.res for p in content if p.obj == obj and p.inst == inst and p.res is not None})
    return {"kind": "instance", "id": inst, "resources": [r for r in (_resource(content, Path(obj, inst, res)) for res in resources) if r]}


def _resource(content: Content, res_path: Path) -> dict[str, Any] | None:
    if res_path in content:
        return {"kind": "singleResource", "id": res_path.res, "type": _type_name(res_path, content[res_path]), "value": _value_json(content[res_path], res_path)}
    items = {p.ri: v for p, v in content.items() if p.ri is not None and Path(p.obj, p.inst, p.res) == res_path}
    if not items:
        rd = resource_def(res_path)
        if rd is None or not rd.multiple:
            return None
    return {
        "kind": "multiResource",
        "id": res_path.res,
        "type": _type_name(res_path, next(iter(items.values()), None)),
        "values": {str(ri): _value_json(v, res_path) for ri, v in sorted(items.items())},
    }


def _type_name(path: Path, value: Any = None) -> str:
    """The definition's type; for a resource no definition knows, the type the decoded value carries."""
    rd = resource_def(path)
    if rd is not None:
        return TYPE_NAMES[rd.type]
    carried = value_type(value)
    return TYPE_NAMES[carried] if carried is not None else "OPAQUE"


# embServe reports these as strings and FITA's node watcher reads them so in
# leshan mode (it appends "k" to Memory Total, compares Group with "0"); OMA
# types them Integer, which is what goes over LwM2M.
AS_STRING = {(3, 21), (15, 1)}


def _value_json(value: Any, path: Path) -> Any:
    if (path.obj, path.res) in AS_STRING and isinstance(value, int):
        return str(value)
    if isinstance(value, ObjLnk):
        return {"objectId": value.obj, "objectInstanceId": value.inst}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    rd = resource_def(path)
    if rd is not None and rd.type is ResourceType.TIME and isinstance(value, int):
        return value * 1000
    return value


# --------------------------------------------------------------------------- node -> content


def content_from_json(node: Any, path: Path) -> Content:
    """Flat content for a node in a write or create body addressed to ``path``."""
    if not isinstance(node, dict):
        raise NodeError(f"body must be a JSON object (a Leshan node), got {type(node).__name__}")
    kind = node.get("kind")
    if path.res is not None:
        if kind not in ("singleResource", "multiResource"):
            raise NodeError(f"a write to resource {path} needs kind singleResource or multiResource, got {kind!r}")
        _check_id(node, path.res, path)
        return _resource_content(node, path)
    if kind != "instance":
        raise NodeError(f"a write or create on {path} needs kind instance, got {kind!r}")
    inst = path.inst
    if inst is None:
        inst = node.get("id")
        if not isinstance(inst, int) or not 0 <= inst <= 0xFFFE:
            raise NodeError(f"instance id {inst!r} in the body is not a number 0..65534")
    else:
        _check_id(node, inst, path)
    resources = node.get("resources", [])
    if not isinstance(resources, list):
        raise NodeError("'resources' must be a list of resource nodes")
    content: Content = {}
    for res in resources:
        if not isinstance(res, dict) or not isinstance(res.get("id"), int):
            raise NodeError(f"resource node {res!r} has no numeric 'id'")
        content.update(_resource_content(res, Path(path.obj, inst, res["id"])))
    return content


def _check_id(node: dict[str, Any], expected: int, path: Path) -> None:
    if "id" in node and node["id"] != expected:
        raise NodeError(f"body id {node['id']!r} does not match the path {path}")


def _resource_content(node: dict[str, Any], res_path: Path) -> Content:
    rtype = _node_type(node, res_path)
    if node.get("kind") == "multiResource":
        values = node.get("values")
        if not isinstance(values, dict):
            raise NodeError(f"multiResource {res_path} needs 'values': {{\"0\": value}}")
        try:
            return {Path(res_path.obj, res_path.inst, res_path.res, int(ri)): _parse(v, rtype, res_path) for ri, v in values.items()}
        except ValueError as exc:
            raise NodeError(f"multiResource {res_path}: {exc}") from None
    if "value" not in node:
        raise NodeError(f"singleResource {res_path} has no 'value'")
    return {res_path: _parse(node["value"], rtype, res_path)}


def _node_type(node: dict[str, Any], path: Path) -> ResourceType:
    given = node.get("type")
    if given is None:
        rd = resource_def(path)
        return rd.type if rd else ResourceType.OPAQUE
    try:
        return ResourceType(str(given).lower())
    except ValueError:
        raise NodeError(f"unknown resource type {given!r} for {path}; use one of {', '.join(TYPE_NAMES.values())}") from None


def _parse(value: Any, rtype: ResourceType, path: Path) -> Any:
    try:
        if rtype is ResourceType.OPAQUE:
            return bytes.fromhex(value) if isinstance(value, str) else bytes(value)
        if rtype is ResourceType.OBJLNK:
            if isinstance(value, dict):
                return ObjLnk(int(value["objectId"]), int(value["objectInstanceId"]))
            return ObjLnk.parse(str(value))
        if rtype is ResourceType.TIME:
            number = int(value)
            return number // 1000 if number > 10**11 else number  # Leshan sends milliseconds
        if rtype is ResourceType.BOOLEAN:
            if isinstance(value, bool):
                return value
            raise ValueError("expected true or false")
        if rtype is ResourceType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError("expected an integer")
            return int(value)
        if rtype is ResourceType.FLOAT:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if rtype is ResourceType.STRING:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except (TypeError, ValueError, KeyError, LwM2MError) as exc:
        raise NodeError(f"{path}: {value!r} is not a valid {rtype.value} value ({exc})") from None
    raise NodeError(f"{path} is executable and takes no value")


def composite_json(content: Content, paths: list[Path]) -> dict[str, Any]:
    """``{"/3/0/0": node, ...}``: the node of each path a composite operation named (those present)."""
    out: dict[str, Any] = {}
    for path in paths:
        below = {p: v for p, v in content.items() if path.contains(p)}
        if below:
            out[str(path)] = node_json(below, path)
    return out


def send_json(content: Content) -> dict[str, Any]:
    """``{"/3303/0/5700": node, ...}``: every resource a Send carried, as its own node."""
    resources = sorted({Path(p.obj, p.inst, p.res) for p in content})
    return {str(r): node_json({p: v for p, v in content.items() if r.contains(p)}, r) for r in resources}


def composite_content_from_json(body: Any) -> Content:
    """Flat content of a Write-Composite body ``{"/3/0/14": value or {"value": v, "type": T}, ...}``."""
    if not isinstance(body, dict) or not body:
        raise NodeError('Write-Composite needs a body {"/obj/inst/res": value or {"value": v, "type": T}, ...}')
    content: Content = {}
    for key, node in body.items():
        try:
            path = Path.parse(key)
        except LwM2MError as exc:
            raise NodeError(f"Write-Composite: {exc}") from None
        if path.res is None:
            raise NodeError(f"Write-Composite writes resources: {key} is not a resource path")
        node = node if isinstance(node, dict) else {"value": node}
        if "value" not in node:
            raise NodeError(f"Write-Composite: {key} has no 'value'")
        if "type" in node or resource_def(path) is not None:
            rtype = _node_type(node, path)
        else:  # a resource no definition knows: the JSON value's own type
            rtype = value_type(node["value"]) or ResourceType.STRING
        content[path] = _parse(node["value"], rtype, path)
    return content
