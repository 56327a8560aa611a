"""The gateway's LwM2M server: registrations in, device management out.

``async with Gateway() as gw`` binds one UDP socket (aiocoap, udp6 transport
only), serves the registration interface on it and sends every device
management request from that same socket back to the address a device
registered from. Northbound bridges (SDF/MQTT, REST) build on the public
methods here: :meth:`Gateway.add_listener`/:meth:`Gateway.subscribe` for
registration events, the async request methods, and :meth:`Gateway.request`
for anything raw.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Awaitable, Callable, Iterable, Mapping

import aiocoap
from aiocoap import Message
from aiocoap.numbers.codes import Code

from ..lwm2m import codecs, tlv
from ..lwm2m.codecs import LINK, OPAQUE, SENML_JSON, TEXT, TLV
from ..lwm2m.link import Link, parse_links
from ..lwm2m.model import Content, LwM2MError, Path
from .answers import await_answer, decode, raise_for_code
from .exchanges import Exchanges
from .errors import (
    GatewayDecodeError,
    GatewayError,
    GatewayRequestError,
    GatewayTimeout,
    GatewayTransportError,
    UnknownEndpoint,
)
from .observe import Notification, Observation, ObservationRefused
from .rd import RegistrationInterface
from .registry import Registration, RegistrationEvent, Registry, Subscription

__all__ = [
    "Gateway",
    "GatewayDecodeError",
    "GatewayError",
    "GatewayRequestError",
    "GatewayTimeout",
    "GatewayTransportError",
    "Notification",
    "Observation",
    "ObservationRefused",
    "Registration",
    "RegistrationEvent",
    "Response",
    "Subscription",
    "UnknownEndpoint",
    "resolve_format",
]

RECEIVE_BUFFER = 4 << 20  # bytes asked for; Linux caps it at net.core.rmem_max

PathLike = Path | str
Format = int | str | None

FORMAT_NAMES: dict[str, int] = {
    "tlv": TLV,
    "text": TEXT,
    "plain": TEXT,
    "senml": SENML_JSON,
    "senml+json": SENML_JSON,
    "opaque": OPAQUE,
    "link": LINK,
}


def resolve_format(fmt: Format) -> int | None:
    """CoAP content format number from a number or a name (tlv, text, senml, opaque, link)."""
    if fmt is None or isinstance(fmt, int):
        return fmt
    try:
        return FORMAT_NAMES[fmt.lower()]
    except KeyError:
        raise ValueError(f"unknown content format {fmt!r}: use a number or one of {', '.join(FORMAT_NAMES)}") from None


def disable_coap_port_sharing() -> None:
    """Make aiocoap bind its UDP sockets without SO_REUSEPORT (unless the user chose otherwise).

    With SO_REUSEPORT, Linux may give a socket bound to port 0 a port that
    another reuse-port socket already holds, and then splits the incoming
    datagrams between the two: with a few hundred simulated nodes in one
    process, some registrations were answered to the wrong socket. aiocoap
    reads this variable at every bind, so it is set for the whole process.
    """
    os.environ.setdefault("AIOCOAP_REUSE_PORT", "0")


def _format_or(fmt: Format, default: int) -> int:
    number = resolve_format(fmt)
    return default if number is None else number


@dataclass(frozen=True)
class Response:
    """A device's successful answer, for callers that want it raw."""

    code: str  # "2.05 Content"
    code_number: int  # 69; the number NextGenGW puts in response_code
    content_format: int | None
    payload: bytes
    location_path: tuple[str, ...] = ()


class Gateway:
    """LwM2M server on one UDP socket.

    ``expiry_grace`` is added to every lifetime before a silent registration
    is dropped; ``request_timeout`` is the default for every device request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        expiry_grace: float = 2.0,
        request_timeout: float = 5.0,
        log: logging.Logger | None = None,
    ):
        self.log = log or logging.getLogger("hil.gateway")
        self._bind = (host, port)
        self.request_timeout = request_timeout
        self.registry = Registry(expiry_grace, self.log)
        self.registry.add_listener(self._on_registration_event)
        self._context: aiocoap.Context | None = None
        self._observations: set[Observation] = set()
        #: the requests in flight to each device (an emulated device's clock watches it)
        self.exchanges = Exchanges()
        self.host = host
        self.port = port

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> "Gateway":
        if self._context is not None:
            raise GatewayError(f"gateway already listening on {self.uri}")
        disable_coap_port_sharing()
        site = RegistrationInterface(self.registry, self.log)
        # udp6 only: the default transport list would also open TCP/TLS/WS listeners
        self._context = await aiocoap.Context.create_server_context(
            site, bind=self._bind, transports=["udp6"], loggername="hil.gateway.coap"
        )
        sock = self._context.request_interfaces[0].token_interface.message_interface.transport.get_extra_info("socket")
        self.port = sock.getsockname()[1]
        try:
            # a thousand nodes registering at once overflow the default buffer
            # (~256 datagrams) and then wait seconds for CoAP retransmission
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError as exc:
            self.log.debug("could not enlarge the receive buffer: %s", exc)
        self.log.info("LwM2M server listening on %s", self.uri)
        return self

    async def close(self) -> None:
        for obs in list(self._observations):
            obs.cancel("the gateway closed")
        self.registry.close()
        context, self._context = self._context, None
        if context is not None:
            await context.shutdown()
            self.log.info("LwM2M server on %s closed", self.uri)

    async def __aenter__(self) -> "Gateway":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def context(self) -> aiocoap.Context:
        if self._context is None:
            raise GatewayError("the gateway is not running: use 'async with Gateway() as gw'")
        return self._context

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"coap://{host}:{self.port}"

    # ------------------------------------------------------------------ registrations

    @property
    def registrations(self) -> Mapping[str, Registration]:
        """Live read-only view of the current registrations by endpoint name."""
        return MappingProxyType(self.registry.by_endpoint)

    def registration(self, endpoint: str) -> Registration:
        try:
            return self.registry.by_endpoint[endpoint]
        except KeyError:
            raise UnknownEndpoint(endpoint, self.registry.by_endpoint) from None

    async def wait_for_registration(self, endpoint: str, timeout: float = 10.0) -> Registration:
        return await self.registry.wait_for(endpoint, timeout)

    def subscribe(self) -> Subscription:
        """Events from now on: ``async with gw.subscribe() as events: ev = await events.get()``."""
        return self.registry.subscribe()

    def add_listener(self, listener: Callable[[RegistrationEvent], None]) -> Callable[[], None]:
        """Synchronous callback on every registration event; returns a function that removes it."""
        return self.registry.add_listener(listener)

    def remove_listener(self, listener: Callable[[RegistrationEvent], None]) -> None:
        self.registry.remove_listener(listener)

    def _on_registration_event(self, event: RegistrationEvent) -> None:
        if event.kind in ("deregistered", "expired"):
            rid = event.registration.registration_id
            for obs in [o for o in self._observations if o.registration_id == rid]:
                obs.cancel(f"the registration was {event.kind}: {event.reason}")

    # ------------------------------------------------------------------ device management

    async def read(self, endpoint: str, path: PathLike, fmt: Format = None, *, timeout: float | None = None) -> Content:
        """Read ``path``; asks for TLV unless ``fmt`` says otherwise, decodes whatever format comes back."""
        path = Path.parse(path)
        accept = _format_or(fmt, TLV)
        response = await self._send(endpoint, "GET", path, "read", accept=accept, timeout=timeout)
        return decode(response, endpoint, path)

    async def read_raw(self, endpoint: str, path: PathLike, fmt: Format = None, *, timeout: float | None = None) -> Response:
        """Read ``path`` without decoding; ``fmt`` None sends no Accept option."""
        path = Path.parse(path)
        response = await self._send(endpoint, "GET", path, "read", accept=resolve_format(fmt), timeout=timeout)
        return _response(response)

    async def write(
        self,
        endpoint: str,
        path: PathLike,
        value: Any,
        *,
        replace: bool = True,
        fmt: Format = None,
        timeout: float | None = None,
    ) -> None:
        """Write a value to a resource, or a ``{Path: value}`` dict below ``path``.

        ``replace`` sends PUT (Replace), otherwise POST (Partial Update).
        Encoded as TLV unless ``fmt`` says otherwise; payloads over one block
        go out with Block1.
        """
        path = Path.parse(path)
        if isinstance(value, Mapping):
            content = {Path.parse(k): v for k, v in value.items()}
        else:
            if path.res is None:
                raise ValueError(
                    f"write of a single value to {endpoint} needs a resource path, got {path}; "
                    "pass a {Path: value} dict to write an instance"
                )
            content = {path: value}
        fmt_number = _format_or(fmt, TLV)
        payload = codecs.encode(content, path, fmt_number)
        await self._send(
            endpoint, "PUT" if replace else "POST", path, "write", payload=payload, content_format=fmt_number, timeout=timeout
        )

    async def execute(
        self, endpoint: str, path: PathLike, arg: str | bytes | None = None, *, timeout: float | None = None
    ) -> None:
        path = Path.parse(path)
        if path.res is None or path.ri is not None:
            raise ValueError(f"execute on {endpoint} needs a resource path /obj/inst/res, got {path}")
        payload = arg.encode("utf-8") if isinstance(arg, str) else (arg or b"")
        await self._send(endpoint, "POST", path, "execute", payload=payload, timeout=timeout)

    async def create(
        self,
        endpoint: str,
        obj_path: PathLike,
        content: Content | None = None,
        *,
        instance_id: int | None = None,
        timeout: float | None = None,
    ) -> Path:
        """Create an object instance; returns its path (from Location-Path, else the id asked for).

        ``instance_id`` (or the instance in ``content``'s paths) is sent as an
        Object Instance TLV; without either, the device picks the id.
        """
        obj = Path.parse(obj_path)
        if obj.inst is not None:
            raise ValueError(f"create on {endpoint} needs an object path such as /9, got {obj}")
        content = {Path.parse(k): v for k, v in (content or {}).items()}
        instances = {k.inst for k in content if k.inst is not None}
        if instance_id is None and len(instances) == 1:
            instance_id = next(iter(instances))
        if len(instances) > 1 or (instances and instances != {instance_id}):
            raise ValueError(
                f"create on {endpoint}{obj}: content spans instances {sorted(instances)}, expected one ({instance_id})"
            )
        if instance_id is None:
            payload = codecs.encode(content, Path(obj.obj, 0), TLV) if content else b""
        else:
            body = codecs.encode(content, Path(obj.obj, instance_id), TLV)
            payload = tlv.frame(tlv.Kind.OBJECT_INSTANCE, instance_id, body)
        response = await self._send(endpoint, "POST", obj, "create", payload=payload, content_format=TLV, timeout=timeout)
        created = self._created_path(endpoint, obj, response.opt.location_path)
        if created is not None:
            return created
        if instance_id is not None:
            return Path(obj.obj, instance_id)
        raise GatewayDecodeError(
            endpoint, str(obj), None, "the device created an instance without a Location-Path naming it"
        )

    async def delete(self, endpoint: str, path: PathLike, *, timeout: float | None = None) -> None:
        await self._send(endpoint, "DELETE", Path.parse(path), "delete", timeout=timeout)

    async def discover(self, endpoint: str, path: PathLike, *, timeout: float | None = None) -> list[Link]:
        path = Path.parse(path)
        response = await self._send(endpoint, "GET", path, "discover", accept=LINK, timeout=timeout)
        try:
            return parse_links(response.payload)
        except LwM2MError as exc:
            raise GatewayDecodeError(endpoint, str(path), LINK, str(exc)) from None

    def observe(self, endpoint: str, path: PathLike, fmt: Format = None, *, timeout: float | None = None) -> Observation:
        """``async with gw.observe(ep, path) as obs`` or ``obs = await gw.observe(ep, path)``."""
        return Observation(self, endpoint, Path.parse(path), resolve_format(fmt), timeout)

    async def write_attributes(
        self,
        endpoint: str,
        path: PathLike,
        *,
        pmin: int | None = None,
        pmax: int | None = None,
        gt: float | None = None,
        lt: float | None = None,
        st: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """Write-Attributes: PUT with the attributes as query, no payload."""
        path = Path.parse(path)
        given = {"pmin": pmin, "pmax": pmax, "gt": gt, "lt": lt, "st": st}
        query = [f"{name}={_attr_text(name, value)}" for name, value in given.items() if value is not None]
        if not query:
            raise ValueError(f"write_attributes on {endpoint}{path}: give at least one of pmin, pmax, gt, lt, st")
        await self._send(endpoint, "PUT", path, "write-attributes", query=query, timeout=timeout)

    async def request(
        self,
        endpoint: str,
        method: str,
        path: PathLike,
        payload: bytes = b"",
        *,
        content_format: Format = None,
        accept: Format = None,
        query: Iterable[str] = (),
        timeout: float | None = None,
    ) -> Response:
        """Any request to a registered device; raises :class:`GatewayRequestError` on non-2.xx."""
        path = Path.parse(path)
        response = await self._send(
            endpoint,
            method,
            path,
            method,
            payload=payload,
            content_format=resolve_format(content_format),
            accept=resolve_format(accept),
            query=query,
            timeout=timeout,
        )
        return _response(response)

    # ------------------------------------------------------------------ for observations (ObservationHost)

    def observe_request(self, endpoint: str, path: Path, fmt: int | None) -> tuple[str, Any]:
        """Send GET with Observe to a registered device, outside aiocoap's blockwise layer.

        Returns the registration's id and aiocoap's request (its ``response``
        is the first answer, its ``observation`` the notifications).
        """
        reg = self.registration(endpoint)
        message = self._message(reg, "GET", path, accept=fmt, observe=True)
        return reg.registration_id, self.context.request(message, handle_blockwise=False)

    async def await_answer(
        self, pending: Awaitable[Message], endpoint: str, path: Path, operation: str, timeout: float | None
    ) -> Message:
        """The device's successful answer to ``pending``, or the :class:`GatewayError` it amounts to."""
        with self.exchanges.track(endpoint):
            response = await await_answer(pending, endpoint, path, operation, self.request_timeout if timeout is None else timeout)
        raise_for_code(response, endpoint, path, operation)
        return response

    async def read_message(self, endpoint: str, path: Path, operation: str, fmt: int | None, timeout: float | None) -> Message:
        """A plain read's successful answer, undecoded (aiocoap reassembles Block2)."""
        return await self._send(endpoint, "GET", path, operation, accept=fmt, timeout=timeout)

    def track_observation(self, observation: Observation) -> bool:
        """Count ``observation`` as live (closing the gateway or the registration ends it); False if its registration is gone."""
        self._observations.add(observation)
        return self.registry.get_by_id(observation.registration_id or "") is not None

    def untrack_observation(self, observation: Observation) -> None:
        self._observations.discard(observation)

    # ------------------------------------------------------------------ plumbing

    def _message(
        self,
        reg: Registration,
        method: str,
        path: Path,
        *,
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        query: Iterable[str] = (),
        observe: bool = False,
    ) -> Message:
        try:
            code = Code[method.upper()]
        except KeyError:
            raise ValueError(f"unknown CoAP method {method!r}") from None
        root = [s for s in reg.root_path.split("/") if s]
        message = Message(code=code, payload=payload, uri_path=tuple(root + path.segments()))
        if content_format is not None:
            message.opt.content_format = content_format
        if accept is not None:
            message.opt.accept = accept
        query = tuple(query)
        if query:
            message.opt.uri_query = query
        if observe:
            message.opt.observe = 0
        # the registration's own remote: same socket, same device address and port
        message.remote = reg.remote
        return message

    async def _send(
        self,
        endpoint: str,
        method: str,
        path: Path,
        operation: str,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> Message:
        reg = self.registration(endpoint)
        message = self._message(reg, method, path, **options)
        return await self.await_answer(self.context.request(message).response, endpoint, path, operation, timeout)

    def _created_path(self, endpoint: str, obj: Path, location: tuple[str, ...]) -> Path | None:
        if not location:
            return None
        segments = [s for s in location if s]
        root = [s for s in self.registration(endpoint).root_path.split("/") if s]
        if segments[: len(root)] == root:
            segments = segments[len(root) :]
        try:
            created = Path.parse("/" + "/".join(segments))
        except LwM2MError as exc:
            raise GatewayDecodeError(endpoint, str(obj), None, f"Location-Path of the created instance: {exc}") from None
        if created.obj != obj.obj or created.inst is None:
            raise GatewayDecodeError(
                endpoint, str(obj), None, f"the device reported the new instance at {created}, not below {obj}"
            )
        return created


def _attr_text(name: str, value: float) -> str:
    if name in ("pmin", "pmax"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer number of seconds, got {value!r}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return repr(value) if isinstance(value, float) else str(value)


def _response(message: Message) -> Response:
    ct = message.opt.content_format
    return Response(
        code=str(message.code),
        code_number=int(message.code),
        content_format=None if ct is None else int(ct),
        payload=bytes(message.payload),
        location_path=tuple(message.opt.location_path),
    )
