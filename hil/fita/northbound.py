"""SDF over MQTT v5, as NextGenGW's northbound side and FITA's node watcher and kubelet speak it.

What both ends agree on, and so what the gateway's bridge
(:mod:`hil.gateway.sdf_mqtt`) and the far-edge MQTT channel
(:mod:`hil.faredge.channel_mqtt`) both take from here:

* topics: ``announce`` and ``unregister`` (QoS 1) from the gateway, and
  requests on ``{ep}/{Object}[/{inst}[/Property/{name}|/Action/{name}]]``
  (:func:`request_topic` writes one, :func:`parse_topic` reads one);
* a request's payload ``{"operation": "GET"|"POST"|"DELETE", "data": ...}``
  (:func:`parse_request`), its answer ``{"response_code": <CoAP code as a
  number>, ...}`` (the codes below, :func:`code_text`);
* an announce ``{"<ep>": {"sdfObject": {...}}}`` and the node labels a watcher
  derives from it (:func:`announce_labels`).

Object and property names and values are :mod:`hil.fita.sdf`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..lwm2m.model import Path
from . import sdf
from .labels import DEVICE_TYPE, labels_from
from .sdf import SdfError

ANNOUNCE_TOPIC = "announce"
UNREGISTER_TOPIC = "unregister"
# [ours] {"<ep>": {"reachable": false, "reason": "...", "timestamp": <epoch s>}} when the gateway loses or finds a node
REACHABILITY_TOPIC = "reachability"
REQUEST_FILTER = "+/+/#"

CREATED, DELETED, CHANGED, CONTENT = 65, 66, 68, 69
BAD_REQUEST, NOT_FOUND, METHOD_NOT_ALLOWED = 128, 132, 133
INTERNAL_ERROR, BAD_GATEWAY, GATEWAY_TIMEOUT = 160, 162, 164
SUCCESS_CODES = {CREATED, DELETED, CHANGED, CONTENT}

OPERATIONS = ("GET", "POST", "DELETE")
PROPERTY, ACTION = "Property", "Action"


def code_text(code: Any) -> str:
    """``132 (4.04)`` for a numeric CoAP code; anything else as given."""
    if isinstance(code, int) and not isinstance(code, bool):
        return f"{code} ({code >> 5}.{code & 31:02d})"
    return repr(code)


def request_topic(endpoint: str, obj: str, inst: int | None = None, kind: str | None = None, name: str | None = None) -> str:
    """``{ep}/{Object}[/{inst}[/Property/{name}|/Action/{name}]]``, the shape :func:`parse_topic` reads."""
    parts = [endpoint, obj]
    if inst is not None:
        parts.append(str(inst))
        if kind is not None:
            if kind not in (PROPERTY, ACTION) or not name:
                raise ValueError(f"topic of {endpoint}/{obj}/{inst}: kind must be {PROPERTY} or {ACTION} with a name, got {kind!r} {name!r}")
            parts += [kind, name]
    return "/".join(parts)


class RequestError(Exception):
    """A request answered with ``code`` without asking the device: bad topic, payload or operation."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where a request topic points: a node, an object, maybe an instance and a property or action."""

    endpoint: str
    obj: int
    inst: int | None = None
    kind: str | None = None  # "Property" or "Action"
    res: int | None = None

    @property
    def path(self) -> Path:
        return Path(self.obj, self.inst, self.res)


def parse_topic(topic: str) -> Target:
    """Request topic -> :class:`Target`; :class:`RequestError` naming what is wrong."""
    parts = topic.split("/")
    if len(parts) not in (2, 3, 5) or not all(parts):
        raise RequestError(
            BAD_REQUEST, f"topic {topic!r}: expected {{ep}}/{{Object}}[/{{inst}}[/Property/{{name}}|/Action/{{name}}]]"
        )
    try:
        obj = sdf.object_id(parts[1])
        if len(parts) == 2:
            return Target(parts[0], obj)
        inst = sdf.instance_id(parts[2], topic)
        if len(parts) == 3:
            return Target(parts[0], obj, inst)
        if parts[3] not in (PROPERTY, ACTION):
            raise RequestError(BAD_REQUEST, f"topic {topic!r}: the 4th level must be Property or Action, not {parts[3]!r}")
        return Target(parts[0], obj, inst, parts[3], sdf.resource_id(obj, parts[4]))
    except SdfError as exc:
        raise RequestError(exc.code, str(exc)) from None


def parse_request(payload: bytes) -> tuple[str, Any]:
    """(operation, data) of a request payload; ``data`` given as a string holding JSON is decoded."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(BAD_REQUEST, f"payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(BAD_REQUEST, f"payload must be a JSON object with 'operation', got {type(body).__name__}")
    operation = body.get("operation")
    if not isinstance(operation, str):
        raise RequestError(BAD_REQUEST, "payload has no 'operation' (GET, POST or DELETE)")
    operation = operation.upper()
    if operation not in OPERATIONS:
        raise RequestError(METHOD_NOT_ALLOWED, f"operation {body['operation']!r} is not one of {', '.join(OPERATIONS)}")
    data = body.get("data")
    if isinstance(data, str):
        # the connection provisioner sends "data": "{\"label\": \"1000\"}"
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            pass  # a plain string value
    return operation, data


def announce_labels(payload: bytes | str | dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(endpoint, node labels) a node watcher derives from an ``announce`` payload.

    Every announced node is an embServe node (the watcher's NextGenGW mode
    starts a kubelet for each); each DevCapMgmt instance whose Group is ``"0"``
    (sensors) lists sensor ids in its Property. The watcher reads the first
    DevCapMgmt instance only; all of them are read here, as
    :func:`hil.fita.labels.node_labels` does, and for a node with one
    DevCapMgmt instance (as embServe has) the two agree.
    """
    body = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
    if not isinstance(body, dict) or len(body) != 1:
        raise ValueError(f"an announce payload is one {{endpoint: {{sdfObject: ...}}}} object, got {str(body)[:200]}")
    endpoint, node = next(iter(body.items()))
    objects = (node or {}).get("sdfObject") or {}
    props = []
    for entry in objects.get("DevCapMgmt") or []:
        values = entry.get("sdfProperty") or {}
        if values.get("Group") == "0" and "Property" in values:
            props.append(str(values["Property"]))
    return endpoint, labels_from(DEVICE_TYPE, props)
