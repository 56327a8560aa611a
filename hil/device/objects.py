"""The node's LwM2M object store: typed values for the objects in :data:`DEFINITIONS`.

The store knows nothing about CoAP. The device-management side of the node
(:mod:`hil.device.site`) maps requests onto it; errors are
:class:`ObjectError` subclasses carrying the CoAP code to answer
(:class:`BadRequest` 4.00, :class:`NotFound` 4.04, :class:`MethodNotAllowed` 4.05).

Values are held per instance as ``{resource id: value}``; a multiple resource
holds ``{resource instance id: value}``; an executable resource that the
instance supports holds ``None``. :meth:`ObjectStore.read` flattens to the
``{Path: value}`` content every codec speaks.

Two kinds of callers:

* the LwM2M server (through the site): :meth:`~ObjectStore.read`,
  :meth:`~ObjectStore.write`, :meth:`~ObjectStore.execute`,
  :meth:`~ObjectStore.create`, :meth:`~ObjectStore.delete`,
  :meth:`~ObjectStore.discover`, :meth:`~ObjectStore.write_attributes` —
  these check the operations the definition allows and call the handler hooks;
* the device itself (node, sensors, service runtime): :meth:`~ObjectStore.get`,
  :meth:`~ObjectStore.set`, :meth:`~ObjectStore.add_instance`,
  :meth:`~ObjectStore.remove_instance` — type-checked, but free of operation
  rules and of hooks (so a hook can update other resources without recursion).

Handler hook API
----------------

An object may have one :class:`ObjectHandler` (``store.add_object(9,
handler=MyHandler())``); the store sets ``handler.store`` and ``handler.oid``.
Override what you need; every hook may raise an :class:`ObjectError` to refuse
the operation, which the server then receives as that code.

``on_read(path, value) -> value``
    Called for each resource read by the server or through :meth:`get`
    (``path`` is the resource path ``/o/i/r``; ``value`` is the stored value,
    a ``{ri: value}`` dict for a multiple resource). Return the value to
    report: computed values such as /3/0/13 Current Time live here. Must not
    call :meth:`set` on the same resource (that would notify observers on
    every read).
``on_write(path, value) -> None``
    The server writes ``value`` to resource ``path``, type-checked against the
    definition. Called before the value is stored; raise to refuse. The hook
    may :meth:`set` other resources (e.g. Update State after a package write).
``on_execute(path, arg) -> None | Awaitable``
    The server executes resource ``path`` with the text argument ``arg`` ("" if
    none). An awaitable returned is awaited before the server gets its answer
    (return ``None`` and start a task for work the answer must not wait for,
    as OMA's Install does).
``on_create(path) -> None``
    The server created instance ``path``; it already holds the values sent
    plus zero defaults for mandatory resources (so does an instance the
    device adds itself). Raise to refuse: the instance
    is removed again.
``on_delete(path) -> None``
    The server is about to delete instance ``path``; raise to refuse.

Listeners (:meth:`ObjectStore.add_listener`) receive a :class:`Change` for
each stored value that changed (``kind`` "value", resource path) and each
instance created or removed (``kind`` "created"/"deleted", instance path),
whoever caused it. Observations and registration updates hang off these.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..lwm2m.link import Link
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


class ObjectError(LwM2MError):
    """An operation the store refuses; ``code`` is the CoAP response code to answer with."""

    code = "4.00"


class BadRequest(ObjectError):
    code = "4.00"


class NotFound(ObjectError):
    code = "4.04"


class MethodNotAllowed(ObjectError):
    code = "4.05"


class ObjectHandler:
    """Behaviour of one object; see the module docstring for the hooks."""

    store: ObjectStore
    oid: int

    def on_read(self, path: Path, value: Any) -> Any:
        return value

    def on_write(self, path: Path, value: Any) -> None:
        pass

    def on_execute(self, path: Path, arg: str) -> Awaitable[None] | None:
        return None

    def on_create(self, path: Path) -> None:
        pass

    def on_delete(self, path: Path) -> None:
        pass


@dataclass(frozen=True)
class Change:
    kind: Literal["value", "created", "deleted"]
    path: Path


Listener = Callable[[Change], None]

ATTRIBUTE_NAMES = ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax")
_INTEGER_ATTRIBUTES = {"pmin", "pmax", "epmin", "epmax"}

_ZERO: dict[ResourceType, Any] = {
    ResourceType.STRING: "",
    ResourceType.INTEGER: 0,
    ResourceType.FLOAT: 0.0,
    ResourceType.BOOLEAN: False,
    ResourceType.OPAQUE: b"",
    ResourceType.TIME: 0,
    ResourceType.OBJLNK: ObjLnk(65535, 65535),  # the "no link" value
    ResourceType.NONE: None,
}


def check_value(path: Path, rd: ResourceDef, value: Any) -> Any:
    """``value`` as the Python type the definition asks for; :class:`BadRequest` when it does not fit."""
    rtype = rd.type

    def wrong(expected: str) -> BadRequest:
        return BadRequest(f"{path} ({rd.name}): {expected} expected, got {value!r} ({type(value).__name__})")

    if rtype is ResourceType.NONE:
        if value not in (None, b"", ""):
            raise wrong("no value (executable resource)")
        return None
    if rtype is ResourceType.STRING:
        if not isinstance(value, str):
            raise wrong("string")
        return value
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("integer")
        if not -(1 << 63) <= value < (1 << 63):
            raise BadRequest(f"{path} ({rd.name}): {value} does not fit in a 64-bit integer")
        return value
    if rtype is ResourceType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("float")
        return float(value)
    if rtype is ResourceType.BOOLEAN:
        if not isinstance(value, bool):
            raise wrong("boolean")
        return value
    if rtype is ResourceType.OPAQUE:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise wrong("bytes")
        return bytes(value)
    if rtype is ResourceType.OBJLNK:
        if isinstance(value, str):
            try:
                return ObjLnk.parse(value)
            except LwM2MError:
                raise wrong("object link 'OBJ:INST'") from None
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and 0 <= v <= 0xFFFF for v in value):
            return ObjLnk(*value)
        raise wrong("object link")
    raise BadRequest(f"{path}: unsupported resource type {rtype}")


class _Object:
    __slots__ = ("definition", "fixed", "handler", "instances")

    def __init__(self, definition: ObjectDef, handler: ObjectHandler | None, fixed: bool):
        self.definition = definition
        self.handler = handler
        self.fixed = fixed
        self.instances: dict[int, dict[int, Any]] = {}


class ObjectStore:
    def __init__(self, definitions: Mapping[int, ObjectDef] = DEFINITIONS):
        self.definitions = definitions
        self._objects: dict[int, _Object] = {}
        self._attributes: dict[Path, dict[str, str]] = {}
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------------ structure

    def add_object(self, oid: int, handler: ObjectHandler | None = None, *, fixed: bool = False) -> None:
        """Make object ``oid`` present (with no instances yet).

        ``fixed``: the server may not create or delete its instances (the
        device's own /1, /3 and /4).
        """
        definition = self.definitions.get(oid)
        if definition is None:
            raise NotFound(
                f"object {oid} has no definition; known objects: {', '.join(map(str, sorted(self.definitions)))}"
            )
        if oid in self._objects:
            raise BadRequest(f"object {oid} ({definition.name}) is already in the store")
        self._objects[oid] = _Object(definition, handler, fixed)
        if handler is not None:
            handler.store = self
            handler.oid = oid

    def set_handler(self, oid: int, handler: ObjectHandler | None) -> None:
        obj = self._object(Path(oid))
        obj.handler = handler
        if handler is not None:
            handler.store = self
            handler.oid = oid

    def handler(self, oid: int) -> ObjectHandler | None:
        return self._object(Path(oid)).handler

    def objects(self) -> dict[int, list[int]]:
        """``{object: [instances]}`` of everything present (for the registration links)."""
        return {oid: sorted(obj.instances) for oid, obj in sorted(self._objects.items())}

    def instances(self, oid: int) -> list[int]:
        return sorted(self._object(Path(oid)).instances)

    def free_instance_id(self, oid: int) -> int:
        """The id a create without one would get: the lowest free."""
        return self._new_instance_id(self._object(Path(oid)), None)

    def exists(self, path: Path | str) -> bool:
        path = Path.parse(path)
        try:
            self._locate(path)
        except ObjectError:
            return False
        return True

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # ------------------------------------------------------------------ device side

    def add_instance(
        self,
        oid: int,
        iid: int | None = None,
        resources: Mapping[int, Any] | None = None,
    ) -> Path:
        """Create an instance from the device side: ``{rid: value}`` (a list or dict for a multiple
        resource, None for a supported executable). Returns its path."""
        obj = self._object(Path(oid))
        iid = self._new_instance_id(obj, iid)
        # every mandatory resource exists with the instance, at its neutral value until set
        values: dict[int, Any] = _mandatory_values(obj.definition)
        for rid, value in (resources or {}).items():
            path = Path(oid, iid, rid)
            rd = self._definition(path)
            if rd.multiple and rd.type is not ResourceType.NONE:
                values[rid] = self._check_multiple(path, rd, value)
            else:
                values[rid] = check_value(path, rd, value)
        obj.instances[iid] = values
        self._emit(Change("created", Path(oid, iid)))
        return Path(oid, iid)

    def remove_instance(self, path: Path | str) -> None:
        path = Path.parse(path)
        obj = self._object(path)
        if path.inst is None or path.res is not None or path.inst not in obj.instances:
            raise NotFound(f"no instance {path} to remove")
        self._drop_instance(obj, path)

    def get(self, path: Path | str) -> Any:
        """Value of a resource (``{ri: value}`` when multiple) or resource instance, through ``on_read``."""
        path = Path.parse(path)
        obj, inst = self._instance(path)
        if path.res is None:
            raise BadRequest(f"get needs a resource path, got {path}")
        value = self._read_resource(obj, inst, Path(path.obj, path.inst, path.res))
        if path.ri is None:
            return value
        if not isinstance(value, dict) or path.ri not in value:
            raise NotFound(f"no resource instance {path}")
        return value[path.ri]

    def set(self, path: Path | str, value: Any, *, always_notify: bool = False, notify: bool = True) -> None:
        """Store a value from the device side (type-checked; listeners hear of a change).

        ``always_notify`` reports the write even when the value is the same: a
        service output is a new reading whether or not the number moved.
        ``notify`` False stores without telling listeners (a value the device
        reports by Send instead of by notifications).
        """
        path = Path.parse(path)
        _, inst = self._instance(path)
        if path.res is None:
            raise BadRequest(f"set needs a resource path, got {path}")
        rd = self._definition(path)
        res_path = Path(path.obj, path.inst, path.res)
        if path.ri is not None:
            if not rd.multiple:
                raise BadRequest(f"{res_path} ({rd.name}) is a single resource: it has no instance {path.ri}")
            current = dict(inst.get(path.res) or {})
            current[path.ri] = check_value(path, rd, value)
            new: Any = current
        elif rd.multiple and rd.type is not ResourceType.NONE:
            new = self._check_multiple(res_path, rd, value)
        else:
            new = check_value(res_path, rd, value)
        self._store(inst, res_path, new, always_notify, notify)

    # ------------------------------------------------------------------ server side

    def read(self, path: Path | str) -> Content:
        """Flat content of an object, instance, resource or resource instance (readable resources only)."""
        path = Path.parse(path)
        obj = self._object(path)
        if path.inst is None:
            out: Content = {}
            for iid in sorted(obj.instances):
                self._read_instance(obj, Path(path.obj, iid), out)
            return out
        obj, inst = self._instance(path)
        if path.res is None:
            out = {}
            self._read_instance(obj, path, out)
            return out
        rd = self._definition(path)
        res_path = Path(path.obj, path.inst, path.res)
        if not rd.readable:
            raise MethodNotAllowed(f"{res_path} ({rd.name}) is not readable: it allows {allowed_operations(rd)}")
        if path.res not in inst:
            raise NotFound(f"{res_path} ({rd.name}) is not present on this instance")
        value = self._read_resource(obj, inst, res_path)
        if path.ri is None:
            return _flatten(res_path, rd, value)
        if not rd.multiple:
            raise NotFound(f"{res_path} ({rd.name}) is a single resource: there is no {path}")
        if path.ri not in value:
            raise NotFound(f"no resource instance {path}")
        return {path: value[path.ri]}

    def write(self, path: Path | str, content: Content, *, replace: bool = True) -> None:
        """Write from the server: Replace (PUT) or Partial Update (POST) at an instance,
        resource or resource instance. All or nothing: every value is checked first."""
        path = Path.parse(path)
        if path.inst is None:
            raise MethodNotAllowed(f"write on object {path} is not allowed: write an instance or a resource")
        obj, inst = self._instance(path)
        content = {Path.parse(k): v for k, v in content.items()}
        if not content:
            raise BadRequest(f"write to {path} carries no value")
        by_resource: dict[int, dict[Path, Any]] = {}
        for key, value in content.items():
            if key.res is None or not path.contains(key):
                raise BadRequest(f"write to {path} carries a value for {key}, which is not below it")
            by_resource.setdefault(key.res, {})[key] = value
        updates: dict[int, Any] = {}
        for rid, values in sorted(by_resource.items()):
            res_path = Path(path.obj, path.inst, rid)
            rd = self._definition(res_path)
            if not rd.writable:
                raise MethodNotAllowed(f"{res_path} ({rd.name}) is not writable: it allows {allowed_operations(rd)}")
            # Replace swaps a multiple resource's instances wholesale, unless one resource
            # instance was addressed; Partial Update adds to them
            merge = not replace or path.ri is not None
            updates[rid] = self._new_resource_value(inst, res_path, rd, values, merge)
        if replace and path.res is None:
            # Replace on an instance: optional writable resources that were not sent go away
            for rid in list(inst):
                rd = obj.definition.resource(rid)
                if rd is not None and rd.writable and not rd.mandatory and rid not in updates:
                    updates[rid] = _REMOVE
        for rid, value in updates.items():
            res_path = Path(path.obj, path.inst, rid)
            if value is not _REMOVE and obj.handler is not None:
                obj.handler.on_write(res_path, value)
            self._store(inst, res_path, value)

    def execute(self, path: Path | str, arg: str = "") -> Awaitable[None] | None:
        path = Path.parse(path)
        if path.res is None or path.ri is not None:
            raise MethodNotAllowed(f"execute needs a resource path /obj/inst/res, got {path}")
        obj, inst = self._instance(path)
        rd = self._definition(path)
        if not rd.executable:
            raise MethodNotAllowed(f"{path} ({rd.name}) is not executable: it allows {allowed_operations(rd)}")
        if path.res not in inst:
            raise NotFound(f"{path} ({rd.name}) is not supported by this instance")
        if obj.handler is not None:
            return obj.handler.on_execute(path, arg)
        return None

    def create(self, path: Path | str, content: Content | None = None, iid: int | None = None) -> Path:
        """Create from the server: instance ``iid`` (or the lowest free id) of object ``path``
        holding ``content`` plus zero values for missing mandatory resources."""
        path = Path.parse(path)
        if path.inst is not None:
            raise MethodNotAllowed(f"create needs an object path such as /9, got {path}")
        obj = self._object(path)
        if obj.fixed:
            raise MethodNotAllowed(f"the server may not create instances of object {path.obj} ({obj.definition.name})")
        content = {Path.parse(k): v for k, v in (content or {}).items()}
        given = {k.inst for k in content}
        if len(given) > 1 or (iid is not None and given and given != {iid}):
            raise BadRequest(f"create on {path}: the values address instances {sorted(given)}, expected one")
        if iid is None and given:
            iid = given.pop()
        if iid is not None and iid in obj.instances:
            raise BadRequest(f"create on {path}: instance {Path(path.obj, iid)} already exists")
        iid = self._new_instance_id(obj, iid)
        values: dict[int, Any] = _mandatory_values(obj.definition)
        for key, value in sorted(content.items()):
            if key.res is None:
                raise BadRequest(f"create on {path}: {key} is not a resource")
            res_path = Path(key.obj, iid, key.res)
            try:
                rd = self._definition(res_path)
            except NotFound as exc:
                raise BadRequest(str(exc)) from None
            if rd.executable:
                raise BadRequest(f"create on {path}: {res_path} ({rd.name}) is executable and takes no value")
            if rd.multiple:
                if key.ri is None:
                    raise BadRequest(f"create on {path}: {res_path} ({rd.name}) is multiple: give resource instances")
                values.setdefault(key.res, {})
                if not isinstance(values[key.res], dict):
                    values[key.res] = {}
                values[key.res][key.ri] = check_value(key, rd, value)
            else:
                if key.ri is not None:
                    raise BadRequest(f"create on {path}: {res_path} ({rd.name}) is a single resource, got {key}")
                values[key.res] = check_value(res_path, rd, value)
        obj.instances[iid] = values
        created = Path(path.obj, iid)
        if obj.handler is not None:
            try:
                obj.handler.on_create(created)
            except BaseException:
                obj.instances.pop(iid, None)
                raise
        self._emit(Change("created", created))
        return created

    def delete(self, path: Path | str) -> None:
        path = Path.parse(path)
        if path.inst is None or path.res is not None:
            raise MethodNotAllowed(f"delete needs an instance path /obj/inst, got {path}")
        obj, _ = self._instance(path)
        if obj.fixed:
            raise MethodNotAllowed(f"the server may not delete {path} ({obj.definition.name})")
        if obj.handler is not None:
            obj.handler.on_delete(path)
        self._drop_instance(obj, path)

    def discover(self, path: Path | str) -> list[Link]:
        """Links for Discover: the path itself, then (below an object or instance) every
        instance and resource present, with ``dim`` for multiple resources and written attributes."""
        path = Path.parse(path)
        obj, inst = self._locate(path)
        links: list[Link] = []
        if path.ri is not None:
            raise BadRequest(f"discover on a resource instance ({path}) is not supported: discover {Path(*path[:3])}")
        if path.inst is None:
            links.append(Link(str(path), dict(self._attributes.get(path, {}))))
            for iid in sorted(obj.instances):
                links.extend(self._instance_links(obj, Path(path.obj, iid)))
        elif path.res is None:
            links.extend(self._instance_links(obj, path))
        else:
            links.append(self._resource_link(obj, inst, path))
        return links

    def write_attributes(self, path: Path | str, attributes: Mapping[str, str | None]) -> None:
        """Store notification attributes (pmin, pmax, gt, lt, st, epmin, epmax) on an existing
        object, instance or resource; a name without value removes that attribute."""
        path = Path.parse(path)
        self._locate(path)
        checked: dict[str, str | None] = {}
        for name, value in attributes.items():
            if name not in ATTRIBUTE_NAMES:
                raise BadRequest(f"unknown attribute {name!r} for {path}: use {', '.join(ATTRIBUTE_NAMES)}")
            if value is None or value == "":
                checked[name] = None
                continue
            try:
                number = float(value)
            except ValueError:
                raise BadRequest(f"attribute {name}={value!r} on {path} is not a number") from None
            if not math.isfinite(number):
                raise BadRequest(f"attribute {name}={value!r} on {path} is not finite")
            if name in _INTEGER_ATTRIBUTES and (number < 0 or not number.is_integer()):
                raise BadRequest(
                    f"attribute {name}={value!r} on {path}: a non-negative whole number of seconds expected"
                )
            checked[name] = str(int(number)) if name in _INTEGER_ATTRIBUTES else value
        merged = dict(self._attributes.get(path, {}))
        for name, value in checked.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        pmin, pmax = merged.get("pmin"), merged.get("pmax")
        if pmin is not None and pmax is not None and int(pmax) < int(pmin):
            raise BadRequest(f"attributes on {path}: pmax={pmax} is below pmin={pmin}")
        if merged:
            self._attributes[path] = merged
        else:
            self._attributes.pop(path, None)

    def attributes(self, path: Path | str) -> dict[str, str]:
        """Attributes written on exactly ``path``."""
        return dict(self._attributes.get(Path.parse(path), {}))

    def effective_attributes(self, path: Path | str) -> dict[str, str]:
        """Attributes in force at ``path``: the object's, overridden by the instance's, then the resource's."""
        path = Path.parse(path)
        merged: dict[str, str] = {}
        segments = [p for p in path if p is not None]
        for depth in range(1, len(segments) + 1):
            merged.update(self._attributes.get(Path(*segments[:depth]), {}))
        return merged

    # ------------------------------------------------------------------ internals

    def _emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    def _object(self, path: Path) -> _Object:
        obj = self._objects.get(path.obj)
        if obj is None:
            raise NotFound(f"object {path.obj} is not on this device (path {path})")
        return obj

    def _instance(self, path: Path) -> tuple[_Object, dict[int, Any]]:
        obj = self._object(path)
        if path.inst is None:
            raise BadRequest(f"{path} is an object path; an instance is needed")
        inst = obj.instances.get(path.inst)
        if inst is None:
            raise NotFound(f"instance {Path(path.obj, path.inst)} does not exist")
        return obj, inst

    def _definition(self, path: Path) -> ResourceDef:
        od = self._object(path).definition
        rd = od.resource(path.res) if path.res is not None else None
        if rd is None:
            raise NotFound(f"object {path.obj} ({od.name}) has no resource {path.res} (path {path})")
        return rd

    def _locate(self, path: Path) -> tuple[_Object, dict[int, Any] | None]:
        """Object and instance of an existing path (resource and resource instance must exist too)."""
        obj = self._object(path)
        if path.inst is None:
            return obj, None
        obj, inst = self._instance(path)
        if path.res is not None:
            rd = self._definition(path)
            if path.res not in inst:
                raise NotFound(f"{Path(*path[:3])} ({rd.name}) is not present on this instance")
            if path.ri is not None and (not isinstance(inst[path.res], dict) or path.ri not in inst[path.res]):
                raise NotFound(f"no resource instance {path}")
        return obj, inst

    def _new_instance_id(self, obj: _Object, iid: int | None) -> int:
        if iid is not None:
            if not 0 <= iid < 65535:
                raise BadRequest(f"instance id {iid} of object {obj.definition.id} is out of range 0..65534")
            if iid in obj.instances:
                raise BadRequest(f"instance {Path(obj.definition.id, iid)} already exists")
            if not obj.definition.multiple and obj.instances:
                raise BadRequest(f"object {obj.definition.id} ({obj.definition.name}) is single-instance and has one")
            return iid
        if not obj.definition.multiple and obj.instances:
            raise BadRequest(f"object {obj.definition.id} ({obj.definition.name}) is single-instance and has one")
        iid = 0
        while iid in obj.instances:
            iid += 1
        return iid

    def _check_multiple(self, path: Path, rd: ResourceDef, value: Any) -> dict[int, Any]:
        if isinstance(value, Mapping):
            items = value.items()
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            raise BadRequest(
                f"{path} ({rd.name}) is a multiple resource: give a list or {{instance: value}}, got {value!r}"
            )
        out: dict[int, Any] = {}
        for ri, v in items:
            if isinstance(ri, bool) or not isinstance(ri, int) or not 0 <= ri <= 65535:
                raise BadRequest(f"{path} ({rd.name}): resource instance id {ri!r} is not 0..65535")
            out[ri] = check_value(path.child(ri), rd, v)
        return out

    def _new_resource_value(
        self,
        inst: dict[int, Any],
        res_path: Path,
        rd: ResourceDef,
        values: dict[Path, Any],
        merge: bool,
    ) -> Any:
        if not rd.multiple:
            if res_path not in values or len(values) != 1:
                odd = ", ".join(str(k) for k in values if k != res_path)
                raise BadRequest(f"{res_path} ({rd.name}) is a single resource, got values for {odd}")
            return check_value(res_path, rd, values[res_path])
        if res_path in values:
            raise BadRequest(f"{res_path} ({rd.name}) is a multiple resource: its values come by resource instance")
        new = {k.ri: check_value(k, rd, v) for k, v in sorted(values.items())}
        return {**(inst.get(res_path.res) or {}), **new} if merge else new

    def _store(self, inst: dict[int, Any], res_path: Path, value: Any, always_notify: bool = False, notify: bool = True) -> None:
        old = inst.get(res_path.res, _REMOVE)
        if value is _REMOVE:
            if old is _REMOVE:
                return
            del inst[res_path.res]
        else:
            if old is not _REMOVE and _same(old, value) and not always_notify:
                return
            inst[res_path.res] = value
        if notify:
            self._emit(Change("value", res_path))

    def _read_resource(self, obj: _Object, inst: dict[int, Any], res_path: Path) -> Any:
        if res_path.res not in inst:
            rd = self._definition(res_path)
            raise NotFound(f"{res_path} ({rd.name}) is not present on this instance")
        value = inst[res_path.res]
        if isinstance(value, dict):
            value = dict(value)
        if obj.handler is not None:
            value = obj.handler.on_read(res_path, value)
        return value

    def _read_instance(self, obj: _Object, inst_path: Path, out: Content) -> None:
        inst = obj.instances[inst_path.inst]
        for rid in sorted(inst):
            rd = obj.definition.resource(rid)
            if rd is None or not rd.readable:
                continue
            res_path = inst_path.child(rid)
            out.update(_flatten(res_path, rd, self._read_resource(obj, inst, res_path)))

    def _drop_instance(self, obj: _Object, path: Path) -> None:
        del obj.instances[path.inst]
        for key in [k for k in self._attributes if path.contains(k)]:
            del self._attributes[key]
        self._emit(Change("deleted", path))

    def _instance_links(self, obj: _Object, inst_path: Path) -> list[Link]:
        inst = obj.instances[inst_path.inst]
        links = [Link(str(inst_path), dict(self._attributes.get(inst_path, {})))]
        links.extend(self._resource_link(obj, inst, inst_path.child(rid)) for rid in sorted(inst))
        return links

    def _resource_link(self, obj: _Object, inst: dict[int, Any] | None, res_path: Path) -> Link:
        attrs: dict[str, str | None] = {}
        rd = obj.definition.resource(res_path.res)
        value = inst.get(res_path.res) if inst is not None else None
        if rd is not None and rd.multiple and isinstance(value, dict):
            attrs["dim"] = str(len(value))
        attrs.update(self._attributes.get(res_path, {}))
        return Link(str(res_path), attrs)


class _Remove:
    def __repr__(self) -> str:
        return "<remove>"


_REMOVE: Any = _Remove()


def _same(a: Any, b: Any) -> bool:
    # 21.0 == 21 is a change of type only when the stored type differs; floats compare as floats
    return type(a) is type(b) and a == b


def _mandatory_values(definition: ObjectDef) -> dict[int, Any]:
    """The neutral value of each mandatory resource (None for an executable, {} for a multiple one)."""
    return {
        rid: {} if rd.multiple and rd.type is not ResourceType.NONE else _ZERO[rd.type]
        for rid, rd in definition.resources.items()
        if rd.mandatory
    }


def _flatten(res_path: Path, rd: ResourceDef, value: Any) -> Content:
    if rd.multiple and isinstance(value, dict):
        return {res_path.child(ri): v for ri, v in sorted(value.items())}
    return {res_path: value}


def allowed_operations(rd: ResourceDef) -> str:
    """"read, write": what the OMA definition lets the server do with the resource."""
    names = {"R": "read", "W": "write", "E": "execute"}
    allowed = [names[c] for c in rd.ops if c in names]
    return ", ".join(allowed) or "nothing"


def instance_values(store: ObjectStore, path: Path | str) -> dict[int, Any]:
    """``{rid: value}`` of an instance as :meth:`ObjectStore.read` reports it (multiple as dicts)."""
    path = Path.parse(path)
    out: dict[int, Any] = {}
    for key, value in store.read(path).items():
        if key.ri is None:
            out[key.res] = value
        else:
            out.setdefault(key.res, {})[key.ri] = value
    return out
