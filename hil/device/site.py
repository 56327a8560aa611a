"""The node's device-management interface: LwM2M requests from the server onto the object store.

One :class:`DeviceSite` is the root resource of the node's aiocoap context,
so requests arrive on the socket the node registered from. aiocoap
reassembles Block1 uploads (a ~2.7 kB service package) before :meth:`render`
sees them and splits large answers into Block2.

Method and path decide the operation: GET read (Accept 40: discover), PUT
write-replace (only a query and no payload: write-attributes), POST on an
object create, on an executable resource execute, elsewhere partial write;
DELETE delete; on the root, FETCH is Read-Composite (with Observe:
Observe-Composite) and iPATCH Write-Composite (LwM2M 1.1, SenML only). The
structured formats the node speaks are its choice (``formats``; default
SenML CBOR, SenML JSON and TLV); text/plain and octet-stream always, as LwM2M
1.1 makes them mandatory. A request without Accept is answered in the
node's preferred format for the LwM2M version it registered with; a format
it does not speak gets 4.06 (Accept) or 4.15 (Content-Format). Every refusal
is an error code with a diagnostic payload; nothing a request carries can
stop the node serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiocoap import Message
from aiocoap.interfaces import ObservableResource
from aiocoap.numbers.codes import Code
from aiocoap.resource import PathCapable, Resource

from ..lwm2m import codecs, tlv
from ..lwm2m.codecs import LINK, OPAQUE, SENML_CBOR, SENML_FORMATS, SENML_JSON, TEXT, TLV, TLV_OLD
from ..lwm2m.link import format_links
from ..lwm2m.model import (
    CodecError,
    Content,
    LwM2MError,
    Path,
    ResourceType,
    resource_type,
)
from .clock import TimerHandle, VirtualClock
from .objects import (
    BadRequest,
    Change,
    MethodNotAllowed,
    ObjectError,
    ObjectStore,
)

# Plain text and opaque are mandatory for every LwM2M client (1.1 Core 7.4);
# the structured formats are the node's choice (``DeviceSite.formats``).
SINGLE_FORMATS = (TEXT, OPAQUE)
STRUCTURED_FORMATS = (SENML_CBOR, SENML_JSON, TLV)
FORMAT_NAMES = {TLV: "TLV", SENML_JSON: "SenML JSON", SENML_CBOR: "SenML CBOR", TEXT: "text", OPAQUE: "opaque"}

_CODES = {
    "4.00": Code.BAD_REQUEST,
    "4.04": Code.NOT_FOUND,
    "4.05": Code.METHOD_NOT_ALLOWED,
    "4.06": Code.NOT_ACCEPTABLE,
    "4.15": Code.UNSUPPORTED_CONTENT_FORMAT,
}


class _Refused(Exception):
    def __init__(self, code: Code, reason: str):
        super().__init__(reason)
        self.code = code


def _error(code: Code, reason: str) -> Message:
    return Message(code=code, payload=reason.encode("utf-8"))


class DeviceSite(PathCapable, Resource, ObservableResource):
    """Root CoAP resource of one node, serving the object store."""

    def __init__(
        self,
        store: ObjectStore,
        clock: VirtualClock,
        log: logging.Logger | None = None,
        *,
        formats: Sequence[int] = STRUCTURED_FORMATS,
        default_format: Callable[[], int] | None = None,
    ):
        """``formats``: the structured formats the node speaks, preferred first; ``default_format``
        gives the format of an answer to a request without Accept (default: the first)."""
        super().__init__()
        unknown = [f for f in formats if f not in STRUCTURED_FORMATS]
        if unknown or not formats:
            raise ValueError(f"node formats {list(formats)}: choose among TLV (11542), SenML JSON (110), SenML CBOR (112)")
        self.store = store
        self.clock = clock
        self.log = log or logging.getLogger("hil.device.site")
        self.formats = tuple(formats)
        self._default_format = default_format or (lambda: self.formats[0])
        self._tlv = TLV in self.formats
        self.observations: set[Observation] = set()
        self._remove_listener = store.add_listener(self._on_change)

    def _formats_text(self, single: bool) -> str:
        shown = [*self.formats, *(SINGLE_FORMATS if single else ())]
        return ", ".join(f"{FORMAT_NAMES[f]} ({f})" for f in shown)

    def _speaks(self, fmt: int) -> bool:
        return fmt in self.formats or (fmt == TLV_OLD and self._tlv)

    def close(self) -> None:
        """Stop serving observations (their timers go too)."""
        self._remove_listener()
        for obs in list(self.observations):
            obs.stop()

    # ------------------------------------------------------------------ aiocoap entry points

    async def render(self, request: Message) -> Message:
        try:
            return await self._dispatch(request)
        except ObjectError as exc:
            return self._refuse(request, _CODES.get(exc.code, Code.BAD_REQUEST), str(exc))
        except _Refused as exc:
            return self._refuse(request, exc.code, str(exc))
        except Exception as exc:  # a bug must cost one answer, never the node
            self.log.exception("request %s %s failed", request.code, _uri(request))
            return _error(Code.INTERNAL_SERVER_ERROR, f"device error: {type(exc).__name__}: {exc}")

    async def add_observation(self, request: Message, serverobservation: Any) -> None:
        try:
            if request.code == Code.GET:
                paths: tuple[Path, ...] = (_path(request),)
            elif request.code == Code.FETCH and _is_root(request):
                paths = tuple(self._composite_paths(request))  # Observe-Composite
                self._composite_accept(request)
            else:
                return
        except (_Refused, ObjectError):
            return  # render answers the error and the observation never starts
        obs = Observation(self, paths, serverobservation)
        self.observations.add(obs)
        serverobservation.accept(obs.stop)

    # ------------------------------------------------------------------ dispatch

    def _refuse(self, request: Message, code: Code, reason: str) -> Message:
        self.log.info("%s %s refused with %s: %s", request.code, _uri(request), code, reason)
        return _error(code, reason)

    async def _dispatch(self, request: Message) -> Message:
        if request.code in (Code.FETCH, Code.iPATCH) and _is_root(request):
            return self._composite(request)
        path = _path(request)
        method = request.code
        if method == Code.GET:
            accept = request.opt.accept
            if accept is not None and int(accept) == LINK:
                return Message(
                    code=Code.CONTENT,
                    payload=format_links(self.store.discover(path)).encode(),
                    content_format=LINK,
                )
            return self._read(path, None if accept is None else int(accept))
        if method == Code.PUT:
            if request.opt.uri_query and not request.payload:
                self._write_attributes(path, request.opt.uri_query)
                return Message(code=Code.CHANGED)
            self.store.write(path, self._decode(request, path), replace=True)
            return Message(code=Code.CHANGED)
        if method == Code.POST:
            if path.inst is None:
                return self._create(request, path)
            if path.res is not None and path.ri is None and self._executable(path):
                return await self._execute(request, path)
            if path.res is not None and request.opt.content_format is None and not request.payload:
                # a bare POST on a resource is an Execute: 4.05 for a resource that
                # is not executable (4.04 for an unknown one), whatever else it allows
                self.store.execute(path)
                return Message(code=Code.CHANGED)
            self.store.write(path, self._decode(request, path), replace=False)
            return Message(code=Code.CHANGED)
        if method == Code.DELETE:
            self.store.delete(path)
            return Message(code=Code.DELETED)
        raise _Refused(
            Code.METHOD_NOT_ALLOWED,
            f"{method} on {path} is not an LwM2M device-management method (GET, PUT, POST, DELETE; "
            "FETCH and iPATCH on the root for composite operations)",
        )

    def _read(self, path: Path, accept: int | None) -> Message:
        fmt = self._default_format() if accept is None else accept
        if not (self._speaks(fmt) or fmt in SINGLE_FORMATS):
            raise _Refused(
                Code.NOT_ACCEPTABLE,
                f"cannot answer {path} as content format {fmt}: this node speaks {self._formats_text(True)} and link (40)",
            )
        content = self.store.read(path)
        if fmt == OPAQUE and (path.res is None or resource_type(path) is not ResourceType.OPAQUE):
            raise _Refused(
                Code.NOT_ACCEPTABLE,
                f"{path} is not an opaque resource: octet-stream cannot carry it",
            )
        try:
            payload = codecs.encode(content, path, TLV if fmt == TLV_OLD else fmt)
        except CodecError as exc:
            raise _Refused(
                Code.NOT_ACCEPTABLE,
                f"cannot answer {path} as content format {fmt}: {exc}",
            ) from None
        return Message(code=Code.CONTENT, payload=payload, content_format=fmt)

    def _decode(self, request: Message, path: Path) -> Content:
        ct = request.opt.content_format
        fmt = None if ct is None else int(ct)
        if fmt is not None and not (self._speaks(fmt) or fmt in SINGLE_FORMATS):
            raise _Refused(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                f"content format {fmt} is not supported for writes: this node takes {self._formats_text(True)}",
            )
        if fmt is None and path.res is None and not self._tlv:
            raise _Refused(Code.UNSUPPORTED_CONTENT_FORMAT, f"write to {path} without a Content-Format: this node takes {self._formats_text(True)}")
        if path.inst is None:
            raise MethodNotAllowed(f"write on object {path} is not allowed: write an instance or a resource")
        try:
            return codecs.decode(bytes(request.payload), path, fmt)
        except CodecError as exc:
            raise BadRequest(
                f"bad payload for {path} (content format {fmt if fmt is not None else 'none'}): {exc}"
            ) from None
        except LwM2MError as exc:
            raise BadRequest(f"bad payload for {path}: {exc}") from None

    def _create(self, request: Message, path: Path) -> Message:
        ct = request.opt.content_format
        fmt = (TLV if self._tlv else self.formats[0]) if ct is None else int(ct)
        if not self._speaks(fmt):
            raise _Refused(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                f"create on {path} needs {self._formats_text(False)}, got content format {fmt}",
            )
        payload = bytes(request.payload)
        iid = None
        content: Content = {}
        if payload:
            base = path
            try:
                if fmt in (TLV, TLV_OLD):
                    top = tlv.split(payload)
                    if top and all(t.kind is tlv.Kind.OBJECT_INSTANCE for t in top):
                        if len(top) != 1:
                            raise BadRequest(
                                f"create on {path} carries {len(top)} object instances: create one at a time"
                            )
                        iid = top[0].id  # may carry no resources at all, so take the id from the TLV itself
                    else:
                        # resources without an Object Instance TLV: the device picks the instance id
                        iid = self.store.free_instance_id(path.obj)
                        base = Path(path.obj, iid)
                content = codecs.decode(payload, base, fmt)
            except ObjectError:
                raise
            except LwM2MError as exc:
                raise BadRequest(f"bad payload to create on {path}: {exc}") from None
        created = self.store.create(path, content, iid)
        return Message(code=Code.CREATED, location_path=tuple(created.segments()))

    def _executable(self, path: Path) -> bool:
        definition = self.store.definitions.get(path.obj)
        rd = definition.resource(path.res) if definition else None
        return bool(rd and rd.executable)

    async def _execute(self, request: Message, path: Path) -> Message:
        try:
            arg = bytes(request.payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"execute argument for {path} is not UTF-8 text ({exc.reason})") from None
        pending = self.store.execute(path, arg)
        if pending is not None:
            await pending
        return Message(code=Code.CHANGED)

    def _write_attributes(self, path: Path, query: tuple[str, ...]) -> None:
        attributes: dict[str, str | None] = {}
        for item in query:
            name, eq, value = item.partition("=")
            attributes[name] = value if eq else None
        self.store.write_attributes(path, attributes)
        for obs in list(self.observations):
            if obs.concerns(path):
                obs.attributes_changed()

    # ------------------------------------------------------------------ composite operations

    def _composite_format(self, request: Message) -> int:
        ct = request.opt.content_format
        fmt = None if ct is None else int(ct)
        if fmt not in SENML_FORMATS or not self._speaks(fmt):
            raise _Refused(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                f"composite operations take SenML: this node speaks {self._formats_text(False)}, got content format {fmt}",
            )
        return fmt

    def _composite_accept(self, request: Message) -> int:
        accept = request.opt.accept
        fmt = self._composite_format(request) if accept is None else int(accept)
        if fmt not in SENML_FORMATS or not self._speaks(fmt):
            raise _Refused(Code.NOT_ACCEPTABLE, f"a composite answer is SenML: this node speaks {self._formats_text(False)}, not {fmt}")
        return fmt

    def _composite_paths(self, request: Message) -> list[Path]:
        fmt = self._composite_format(request)
        try:
            return codecs.decode_paths(bytes(request.payload), fmt)
        except LwM2MError as exc:
            raise BadRequest(f"bad composite request (content format {fmt}): {exc}") from None

    def _composite(self, request: Message) -> Message:
        """Read-Composite and Observe-Composite (FETCH /) or Write-Composite (iPATCH /)."""
        if request.code == Code.iPATCH:
            fmt = self._composite_format(request)
            try:
                content = codecs.decode(bytes(request.payload), None, fmt)
            except LwM2MError as exc:
                raise BadRequest(f"bad Write-Composite payload (content format {fmt}): {exc}") from None
            self._write_composite(content)
            return Message(code=Code.CHANGED)
        paths = self._composite_paths(request)
        accept = self._composite_accept(request)
        content: Content = {}
        for path in paths:
            if self.store.exists(path):  # paths the node does not have are left out of the answer
                content.update(self.store.read(path))
        if not content and not any(self.store.exists(p) for p in paths):
            raise _Refused(Code.NOT_FOUND, f"none of {', '.join(map(str, paths))} exists on this node")
        return Message(code=Code.CONTENT, payload=codecs.encode(content, None, accept), content_format=accept)

    def _write_composite(self, content: Content) -> None:
        by_instance: dict[Path, Content] = {}
        for path, value in content.items():
            by_instance.setdefault(Path(path.obj, path.inst), {})[path] = value
        for inst in by_instance:  # every instance first: nothing is written when one is missing
            if not self.store.exists(inst):
                raise _Refused(Code.NOT_FOUND, f"Write-Composite: instance {inst} does not exist")
        for inst, values in by_instance.items():
            self.store.write(inst, values, replace=False)

    # ------------------------------------------------------------------ notifications

    def _on_change(self, change: Change) -> None:
        for obs in list(self.observations):
            if obs.concerns(change.path):
                obs.changed()


class Observation:
    """One server observation of a path, paced by the pmin/pmax/gt/lt/st attributes in force.

    pmin holds a notification back until that long after the previous one;
    pmax sends one at the latest that long after the previous one, changed or
    not. Both run on the node's virtual clock. gt/lt/st (numeric single
    resources only) let a change through when it crosses a threshold or moves
    by at least st since the last notification.
    """

    def __init__(self, site: DeviceSite, paths: tuple[Path, ...], serverobservation: Any):
        self.site = site
        self.paths = paths
        # one path: a plain Observe, whose attributes apply; several: Observe-Composite
        self.path: Path | None = paths[0] if len(paths) == 1 else None
        self._servobs = serverobservation
        self._clock = site.clock
        self.last_sent = self._clock.now()
        self.last_value = self._numeric_value()
        self.sent = 0  # notifications after the first answer
        self._deferred: TimerHandle | None = None
        self._pmax: TimerHandle | None = None
        self._arm_pmax()

    def concerns(self, path: Path) -> bool:
        return any(p.contains(path) or path.contains(p) for p in self.paths)

    def _attrs(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            return self.site.store.effective_attributes(self.path)
        except LwM2MError:
            return {}

    def _numeric_value(self) -> float | None:
        if self.path is None or self.path.res is None:
            return None
        try:
            value = self.site.store.get(self.path)
        except LwM2MError:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    def _passes_thresholds(self, attrs: dict[str, str]) -> bool:
        if not any(k in attrs for k in ("gt", "lt", "st")):
            return True
        new = self._numeric_value()
        old = self.last_value
        if new is None or old is None:
            return True
        if "st" in attrs and abs(new - old) >= float(attrs["st"]):
            return True
        for key in ("gt", "lt"):
            if key in attrs:
                limit = float(attrs[key])
                if (old > limit) != (new > limit) or (old < limit) != (new < limit):
                    return True
        return False

    def changed(self) -> None:
        if not any(self.site.store.exists(p) for p in self.paths):
            self._send()  # the answer is now 4.04, which ends the observation
            return
        attrs = self._attrs()
        if not self._passes_thresholds(attrs):
            return
        pmin = float(attrs.get("pmin", 0) or 0)
        due = self.last_sent + pmin
        if self._clock.now() >= due:
            self._send()
        elif self._deferred is None:
            self._deferred = self._clock.call_at(due, self._send)

    def attributes_changed(self) -> None:
        self._arm_pmax()

    def _arm_pmax(self) -> None:
        if self._pmax is not None:
            self._pmax.cancel()
            self._pmax = None
        pmax = float(self._attrs().get("pmax", 0) or 0)
        if pmax > 0:
            self._pmax = self._clock.call_at(self.last_sent + pmax, self._send)

    def _send(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        self.last_sent = self._clock.now()
        self.last_value = self._numeric_value()
        self.sent += 1
        self._servobs.trigger()
        self._arm_pmax()

    def stop(self) -> None:
        for handle in (self._deferred, self._pmax):
            if handle is not None:
                handle.cancel()
        self._deferred = self._pmax = None
        self.site.observations.discard(self)


def _uri(request: Message) -> str:
    return "/" + "/".join(request.opt.uri_path)


def _is_root(request: Message) -> bool:
    return request.opt.uri_path in ((), ("",))


def _path(request: Message) -> Path:
    segments = request.opt.uri_path
    if not segments or segments == ("",):
        raise _Refused(
            Code.NOT_FOUND,
            "no object addressed: LwM2M paths are /obj[/inst[/res[/ri]]]",
        )
    try:
        return Path.parse("/" + "/".join(segments))
    except LwM2MError:
        raise _Refused(
            Code.NOT_FOUND,
            f"no resource at {_uri(request)}: LwM2M paths are numeric /obj[/inst[/res[/ri]]]",
        ) from None
