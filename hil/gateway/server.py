"""The gateway's LwM2M server: registrations in, device management out.

``async with Gateway() as gw`` binds one UDP socket (aiocoap, udp6 transport
only), serves the registration interface on it and sends every device
management request from that same socket back to the address a device
registered from. With a PSK table (``psk=``) a second socket serves DTLS-PSK
(:mod:`hil.gateway.dtls`); a device registered there is asked over its own
DTLS session. Northbound bridges (SDF/MQTT, REST) build on the public
methods here: :meth:`Gateway.add_listener`/:meth:`Gateway.subscribe` for
registration events, the async request methods, and :meth:`Gateway.request`
for anything raw.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Awaitable, Callable, Iterable, Mapping

import aiocoap
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import NON

from ..lwm2m import codecs, tlv
from ..lwm2m.codecs import LINK, OPAQUE, SENML_CBOR, SENML_JSON, TEXT, TLV
from ..lwm2m.link import Link, parse_links
from ..lwm2m.model import DEFINITIONS, Content, LwM2MError, Path, ResourceType
from ..progress import waiting
from .answers import await_answer, decode, raise_for_code
from .composite import CompositeObservation, describe, parse_paths, request_body
from .formats import FormatChooser, Kind, kind_of, negotiate
from .in_flight import InFlight
from .errors import (
    GatewayDecodeError,
    GatewayError,
    GatewayRequestError,
    GatewayTimeout,
    GatewayTransportError,
    UnknownEndpoint,
)
from ..lwm2m.security import PskTable
from .exchange import DeviceExchanges, TransmissionParameters
from .observe import Notification, NotificationListener, Observation, ObservationRefused
from .reachability import Reachability
from .rd import RegistrationInterface
from .registry import GONE, Registration, RegistrationEvent, Registry, Subscription
from .send import SendInterface
from .site import GatewaySite
from .store import Deployment, GatewayStore
from ..lwm2m.coap_socket import server_context_on
from .transport import DatagramGuard, remote_for

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
    "TransmissionParameters",
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
    "senml_json": SENML_JSON,
    "cbor": SENML_CBOR,
    "senml+cbor": SENML_CBOR,
    "senml_cbor": SENML_CBOR,
    "opaque": OPAQUE,
    "link": LINK,
}


def resolve_format(fmt: Format) -> int | None:
    """CoAP content format number from a number or a name (tlv, text, senml, senml_cbor, opaque, link)."""
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
    is dropped. Requests to devices are paced by ``transmission`` (CoAP's
    transmission parameters, RFC 7252 defaults; see
    :mod:`hil.gateway.exchange`), and each waits ``request_timeout`` at most:
    by default as long as all its retransmissions take. With ``database``
    (a file path) registrations and deployments survive a restart
    (:mod:`hil.gateway.store`).
    ``registration_policy`` checks every Register and Update (e.g.
    :class:`~hil.gateway.strict.StrictRegistration`); the default takes them all.
    ``sock``: serve on this bound UDP socket instead of binding ``host:port``
    (e.g. one made inside a fleet's network namespace, where the nodes are;
    ``host`` still names the address for :attr:`uri`).

    Content formats are chosen per registration (:mod:`hil.gateway.formats`)
    unless the caller names one (``fmt=``), which is then used as it is.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        expiry_grace: float = 2.0,
        request_timeout: float | None = None,
        transmission: TransmissionParameters | None = None,
        database: str | os.PathLike[str] | None = None,
        log: logging.Logger | None = None,
        registration_policy: Any = None,
        psk: PskTable | None = None,
        dtls_port: int = 0,
        sock: socket.socket | None = None,
    ):
        self.log = log or logging.getLogger("hil.gateway")
        self._bind = (host, port)
        self._sock = sock  # bound elsewhere (e.g. in a network namespace); host and port then say where
        self.transmission = transmission or TransmissionParameters()
        self._tuning = self.transmission.tuning()
        self.request_timeout = self.transmission.exchange_timeout if request_timeout is None else request_timeout
        self.registration_policy = registration_policy
        self.registry = Registry(expiry_grace, self.log)
        self.registry.add_listener(self._on_registration_event)
        self.formats = FormatChooser(self.log)
        self.registry.add_listener(self.formats.on_registration)
        self._report_listeners: list[NotificationListener] = []
        self.sends = SendInterface(self.registry, self.report, self.log)
        self.reachability = Reachability(self.registry, self.log)
        self._context: aiocoap.Context | None = None
        self.exchanges: DeviceExchanges | None = None
        self.datagrams: DatagramGuard | None = None
        self.store = GatewayStore(database, self.log) if database is not None else None
        self._observations: set[Observation] = set()
        #: the requests in flight to each device (an emulated device's clock watches it)
        self.in_flight = InFlight()
        self.host = host
        self.port = port
        if psk is not None and sock is not None:
            # the DTLS listener binds a socket of its own, in this process's namespace
            raise GatewayError("a gateway on a socket made elsewhere (sock=) serves NoSec only; DTLS-PSK needs psk without sock")
        self.psk = psk
        self.dtls_port = dtls_port
        self.dtls: Any = None  # the DTLS interface (hil.gateway.dtls) when psk is given
        self.dtls_exchanges: DeviceExchanges | None = None

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> "Gateway":
        if self._context is not None:
            raise GatewayError(f"gateway already listening on {self.uri}")
        disable_coap_port_sharing()
        security = None
        if self.psk is not None:
            from .dtls import PskBinding, require_dtls

            require_dtls()
            security = self.sends.security = PskBinding(self.psk)
        site = GatewaySite(RegistrationInterface(self.registry, self.log, self.registration_policy, security),
                           self.sends, self.log)
        if self._sock is not None:
            self._context = await server_context_on(self._sock, site, "hil.gateway.coap")
        else:
            # udp6 only: the default transport list would also open TCP/TLS/WS listeners
            self._context = await aiocoap.Context.create_server_context(
                site, bind=self._bind, transports=["udp6"], loggername="hil.gateway.coap"
            )
        self.exchanges = DeviceExchanges(self._context, self.transmission, self.log, on_silent=self.reachability.silent)
        self.datagrams = DatagramGuard(
            self._context, self.log, on_heard=self.reachability.heard, on_unreachable=self.reachability.unreachable
        )
        sock = self._context.request_interfaces[0].token_interface.message_interface.transport.get_extra_info("socket")
        self.port = sock.getsockname()[1]
        self._enlarge_receive_buffer(sock)
        if self.psk is not None:
            await self._start_dtls()
        if self.store is not None:
            self._restore(self.store.open())
            self.registry.add_listener(self.store.on_registration_event)
        self.log.info("LwM2M server listening on %s", self.uri)
        return self

    def _enlarge_receive_buffer(self, sock: socket.socket) -> None:
        try:
            # a thousand nodes registering at once overflow the default buffer
            # (~256 datagrams) and then wait seconds for CoAP retransmission
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError as exc:
            self.log.debug("could not enlarge the receive buffer: %s", exc)

    async def _start_dtls(self) -> None:
        from . import dtls

        assert self.psk is not None and self._context is not None
        try:
            self.dtls = await dtls.attach(self._context, (self.host, self.dtls_port), self.psk, self.log,
                                          on_heard=self.reachability.heard)
        except BaseException:
            await self.close()
            raise
        self.dtls_port = self.dtls.port
        self._enlarge_receive_buffer(self.dtls.socket)
        self.dtls_exchanges = DeviceExchanges(self._context, self.transmission, self.log,
                                              on_silent=self.reachability.silent, interface=len(self._context.request_interfaces) - 1)
        self.log.info("LwM2M server listening on %s (DTLS-PSK, %d secured endpoints)", self.coaps_uri, len(self.psk))

    def _restore(self, stored: list[Registration]) -> None:
        """Registrations from before a restart whose lifetime has not run out: reachable at once."""
        now = time.time()
        restored = 0
        for reg in stored:
            left = reg.updated_at + reg.lifetime + self.registry.expiry_grace - now
            if left <= 0 or reg.endpoint in self.registry.by_endpoint:
                continue
            try:
                remote = remote_for(self.context, *reg.address)
            except OSError as exc:
                self.log.warning("not restoring %s: its address %s: %s", reg.endpoint, reg.address_text, exc)
                continue
            self.registry.register(dataclasses.replace(reg, remote=remote), expires_in=left,
                                   reason=f"restored from {self.store.path if self.store else 'the database'}")
            restored += 1
        if stored:
            self.log.info("restored %d of %d stored registrations", restored, len(stored))

    @property
    def deployments(self) -> list[Deployment]:
        """What the gateway put on its devices' object 9 (kept across restarts with ``database``)."""
        return sorted(self.store.deployments.values(), key=lambda d: (d.endpoint, d.instance)) if self.store else []

    async def close(self) -> None:
        for obs in list(self._observations):
            obs.cancel("the gateway closed")
        if self.store is not None:
            self.registry.remove_listener(self.store.on_registration_event)  # closing is no de-registration
            await self.store.close()
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

    @property
    def coaps_uri(self) -> str | None:
        """``coaps://HOST:PORT`` of the DTLS-PSK socket (None without a PSK table)."""
        if self.dtls is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"coaps://{host}:{self.dtls_port}"

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
        with waiting(f"{endpoint} to register at the gateway", timeout):
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
        if event.kind in GONE:
            rid = event.registration.registration_id
            for obs in [o for o in self._observations if o.registration_id == rid]:
                obs.cancel(f"the registration was {event.kind}: {event.reason}")

    # ------------------------------------------------------------------ reports

    def add_report_listener(self, listener: NotificationListener) -> Callable[[], None]:
        """``listener(notification)`` for every notification of every observation and every Send
        (``kind`` "send"); returns a function that removes it."""
        self._report_listeners.append(listener)
        return lambda: self._report_listeners.remove(listener) if listener in self._report_listeners else None

    def report(self, notification: Notification) -> None:
        for listener in list(self._report_listeners):
            try:
                listener(notification)
            except Exception:
                self.log.exception("report listener %r failed on %s from %s", listener, notification.kind, notification.endpoint)

    # ------------------------------------------------------------------ formats

    async def negotiate(self, endpoint: str, path: Path | None, kind: str, attempt: Callable[[int], Awaitable[Any]]) -> Any:
        """``attempt(format)`` in the format chosen for ``endpoint``, once more in the next after a 4.06/4.15."""
        return await negotiate(self.formats, self.registration(endpoint), path, kind, attempt)  # type: ignore[arg-type]

    async def _in_format(self, endpoint: str, path: Path | None, kind: Kind, fmt: Format, attempt: Callable[[int], Awaitable[Any]]) -> Any:
        explicit = resolve_format(fmt)
        if explicit is not None:
            return await attempt(explicit)
        return await self.negotiate(endpoint, path, kind, attempt)

    # ------------------------------------------------------------------ device management

    async def read(self, endpoint: str, path: PathLike, fmt: Format = None, *, timeout: float | None = None) -> Content:
        """Read ``path`` in ``fmt``, or in the format chosen for the device; decodes whatever format comes back."""
        path = Path.parse(path)

        async def attempt(accept: int) -> Message:
            return await self._send(endpoint, "GET", path, "read", accept=accept, timeout=timeout)

        response = await self._in_format(endpoint, path, kind_of(path), fmt, attempt)
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
        Encoded in ``fmt``, or in the format chosen for the device; payloads
        over one block go out with Block1.
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

        async def attempt(fmt_number: int) -> Message:
            payload = codecs.encode(content, path, fmt_number)
            return await self._send(
                endpoint, "PUT" if replace else "POST", path, "write", payload=payload, content_format=fmt_number, timeout=timeout
            )

        kind = kind_of(path) if set(content) == {path} else "multi"
        await self._in_format(endpoint, path, kind, fmt, attempt)

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
        fmt: Format = None,
        timeout: float | None = None,
    ) -> Path:
        """Create an object instance; returns its path (from Location-Path, else the id asked for).

        In ``fmt``, or the format chosen for the device. ``instance_id`` (or
        the instance in ``content``'s paths) goes in the payload: TLV wraps it
        in an Object Instance TLV, SenML names it in every record (with no
        values given, those of the object's mandatory resources at their
        neutral values, so the id has a record to travel in); without
        either, the device picks the id.
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

        async def attempt(fmt_number: int) -> Message:
            payload = _create_payload(obj, content, instance_id, fmt_number)
            return await self._send(endpoint, "POST", obj, "create", payload=payload, content_format=fmt_number, timeout=timeout)

        response = await self._in_format(endpoint, obj, "multi", fmt, attempt)
        created = self._created_path(endpoint, obj, response.opt.location_path)
        if created is None and instance_id is not None:
            created = Path(obj.obj, instance_id)
        if created is not None:
            if self.store is not None:
                self.store.on_device_request(endpoint, "POST", created)
            return created
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

    # ------------------------------------------------------------------ composite operations (LwM2M 1.1)

    async def read_composite(
        self, endpoint: str, paths: Iterable[PathLike], fmt: Format = None, *, timeout: float | None = None
    ) -> Content:
        """Read-Composite: the values of every path (objects, instances, resources) in one request."""
        targets = parse_paths(paths, endpoint)

        async def attempt(fmt_number: int) -> Message:
            return await self.read_composite_message(endpoint, targets, fmt_number, timeout)

        response = await self._in_format(endpoint, None, "composite", fmt, attempt)
        return decode(response, endpoint, None, describe(targets))

    async def write_composite(self, endpoint: str, content: Mapping[PathLike, Any], fmt: Format = None, *, timeout: float | None = None) -> None:
        """Write-Composite: ``{resource path: value}`` across instances and objects in one request."""
        values = {Path.parse(k): v for k, v in content.items()}
        if not values:
            raise ValueError(f"write_composite on {endpoint} needs at least one value")
        where = describe(values)

        async def attempt(fmt_number: int) -> Message:
            payload = codecs.encode(values, None, fmt_number)
            return await self._send(endpoint, "iPATCH", None, "write-composite", payload=payload, content_format=fmt_number,
                                    timeout=timeout, where=where)

        await self._in_format(endpoint, None, "composite", fmt, attempt)

    def observe_composite(
        self, endpoint: str, paths: Iterable[PathLike], fmt: Format = None, *, timeout: float | None = None
    ) -> CompositeObservation:
        """Observe-Composite: ``async with gw.observe_composite(ep, [p1, p2]) as obs``; each notification holds every path."""
        return CompositeObservation(self, endpoint, parse_paths(paths, endpoint), resolve_format(fmt), timeout)

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
        with self.in_flight.track(endpoint):
            response = await await_answer(pending, endpoint, path, operation, self.request_timeout if timeout is None else timeout)
        raise_for_code(response, endpoint, path, operation)
        return response

    async def read_message(self, endpoint: str, path: Path, operation: str, fmt: int | None, timeout: float | None) -> Message:
        """A plain read's successful answer, undecoded (aiocoap reassembles Block2)."""
        return await self._send(endpoint, "GET", path, operation, accept=fmt, timeout=timeout)

    def observe_composite_request(self, endpoint: str, paths: tuple[Path, ...], fmt: int) -> tuple[str, Any]:
        """FETCH / with Observe and the paths in SenML ``fmt``, outside aiocoap's blockwise layer."""
        reg = self.registration(endpoint)
        message = self._message(reg, "FETCH", None, payload=request_body(paths, fmt), content_format=fmt, accept=fmt, observe=True)
        return reg.registration_id, self.context.request(message, handle_blockwise=False)

    async def read_composite_message(self, endpoint: str, paths: tuple[Path, ...], fmt: int, timeout: float | None) -> Message:
        """A Read-Composite's successful answer, undecoded."""
        return await self._send(endpoint, "FETCH", None, "read-composite", payload=request_body(paths, fmt),
                                content_format=fmt, accept=fmt, timeout=timeout, where=describe(paths))

    def track_observation(self, observation: Observation) -> bool:
        """Count ``observation`` as live (closing the gateway or the registration ends it); False if its registration is gone."""
        self._observations.add(observation)
        return self.registry.get_by_id(observation.registration_id or "") is not None

    def untrack_observation(self, observation: Observation) -> None:
        self._observations.discard(observation)

    def deregister_observation(self, request: Any) -> None:
        """RFC 7641 3.6: a GET with Observe=1 and the observation's token, sent once (non-confirmable).

        Should it be lost, the device's next notification meets a Reset anyway.
        """
        original = getattr(getattr(request, "_pipe", None), "request", None)  # aiocoap keeps the message sent there
        if original is None or self._context is None or not original.token:
            return
        message = Message(code=Code.GET, uri_path=original.opt.uri_path, observe=1)
        if original.opt.accept is not None:
            message.opt.accept = original.opt.accept
        message.mtype, message.token, message.remote = NON, original.token, original.remote
        try:
            self._context.request_interfaces[0].token_interface.send_message(message, None)
        except Exception as exc:  # the device is gone, the socket closing: the Reset path still holds
            self.log.debug("observation of %s: deregistration not sent: %s", original.remote, exc)

    # ------------------------------------------------------------------ plumbing

    def _message(
        self,
        reg: Registration,
        method: str,
        path: Path | None,
        *,
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
        query: Iterable[str] = (),
        observe: bool = False,
    ) -> Message:
        try:
            code = Code[method] if method == "iPATCH" else Code[method.upper()]
        except KeyError:
            raise ValueError(f"unknown CoAP method {method!r}") from None
        root = [s for s in reg.root_path.split("/") if s]
        # None: the client's LwM2M root itself, where composite operations go
        message = Message(code=code, payload=payload, uri_path=tuple(root + (path.segments() if path is not None else [])))
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
        message.transport_tuning = self._tuning
        return message

    async def _send(
        self,
        endpoint: str,
        method: str,
        path: Path | None,
        operation: str,
        *,
        timeout: float | None = None,
        where: str | None = None,
        **options: Any,
    ) -> Message:
        reg = self.registration(endpoint)
        message = self._message(reg, method, path, **options)
        target = where if where is not None else (path if path is not None else "/")
        response = await self.await_answer(self.context.request(message).response, endpoint, target, operation, timeout)  # type: ignore[arg-type]
        if self.store is not None and path is not None and path.inst is not None:
            self.store.on_device_request(endpoint, method.upper(), path, options.get("payload", b""), options.get("content_format"))
        return response

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


def _create_payload(obj: Path, content: Content, instance_id: int | None, fmt: int) -> bytes:
    if fmt in (TLV,):
        if instance_id is None:
            return codecs.encode(content, Path(obj.obj, 0), TLV) if content else b""
        body = codecs.encode(content, Path(obj.obj, instance_id), TLV)
        return tlv.frame(tlv.Kind.OBJECT_INSTANCE, instance_id, body)
    if not content:
        if instance_id is None:
            return b""  # the device picks the id
        content = _neutral_instance(obj.obj, instance_id)
    return codecs.encode(content, obj, fmt)


def _neutral_instance(obj: int, inst: int) -> Content:
    """The mandatory readable resources of ``obj`` at their neutral values: what a fresh instance holds anyway."""
    od = DEFINITIONS.get(obj)
    neutral = {ResourceType.STRING: "", ResourceType.INTEGER: 0, ResourceType.FLOAT: 0.0, ResourceType.BOOLEAN: False,
               ResourceType.TIME: 0, ResourceType.OPAQUE: b""}
    content = {
        Path(obj, inst, rd.id): neutral[rd.type]
        for rd in (od.mandatory_resources if od else [])
        if rd.type in neutral and not rd.multiple
    }
    if not content:
        raise ValueError(
            f"create of /{obj}/{inst} in SenML needs a value to carry the instance id, and object {obj} "
            "has no mandatory single resource to send: give values, or create in TLV (fmt='tlv')"
        )
    return content


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
