"""The node's LwM2M client: one UDP socket, registration state machine, device site.

:class:`LwM2MClient` owns one aiocoap context bound to ``(host, 0)``; the
registration requests leave from that socket and the :class:`DeviceSite`
answers the server's requests on it, so the server reaches the node at the
address it registered from.

Registration, as a single task per node that sleeps on the node's virtual
clock between steps (no polling):

* Register ``POST /rd?ep=&lt=&lwm2m=1.1&b=U`` with the object links
  (Content-Format 40); the Location-Path is kept for Update and De-register.
  The root link names the one optional data format the node prefers
  (``</>;rt="oma.lwm2m";ct=112``; LwM2M 1.1 Core 6.2.1), nothing when it
  prefers TLV, the format every server takes by default. A server that does
  not support LwM2M 1.1 refuses with 4.12 (1.1 Core 6.2.1 and Transport
  table 6.7-2): the node then registers as 1.0 (TLV, no ``ct``) at once.
* Update at 85 % of the lifetime, and soon after objects or instances are
  added or removed (with the new links), or the lifetime in /1/0/1 changes
  (with the new ``lt``); /1/0/8 executes an Update too.
* An Update answered 4.04 (the server forgot us), or failing otherwise,
  leads to a new Register.
* A Register that fails (no answer within ``request_timeout``, network
  error, refusal) is retried after 1, 2, 4 ... s of virtual time, capped at
  ``backoff_cap``. Nothing here raises into the node.
* :meth:`LwM2MClient.close` de-registers (briefly waiting for the answer)
  and closes the socket.

Send (LwM2M 1.1 Information Reporting): :meth:`LwM2MClient.send` posts
values to ``/dp`` on the server in the node's preferred SenML format.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

# Binding port 0 with SO_REUSEPORT (aiocoap's default for server contexts)
# lets Linux hand the same port to two sockets of this user: two nodes, or a
# node and the gateway, would then share a port and lose each other's
# datagrams. aiocoap documents this switch; an explicit setting wins.
os.environ.setdefault("AIOCOAP_REUSE_PORT", "0")

import aiocoap
from aiocoap import Message
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code

from ..lwm2m import codecs
from ..lwm2m.codecs import LINK, LWM2M_JSON, SENML_CBOR, SENML_FORMATS, SENML_JSON, TLV
from ..lwm2m.coap_socket import server_context_on
from ..lwm2m.link import registration_links
from ..lwm2m.model import Content, LwM2MError, Path
from ..lwm2m.security import SECURITY_OBJECT, PskCredential
from ..lwm2m.transmission import TransmissionParameters
from .clock import TimerHandle, VirtualClock
from .objects import Change, ObjectStore
from .site import DeviceSite

LWM2M_VERSION = "1.1"
LWM2M_VERSIONS = ("1.0", "1.1")
# the optional formats a root link may name (1.0 knew only LwM2M JSON)
ANNOUNCEABLE = {"1.0": (LWM2M_JSON,), "1.1": (SENML_CBOR, SENML_JSON, LWM2M_JSON)}
UPDATE_AT = 0.85  # fraction of the lifetime after which the node sends its Update
LIFETIME = Path(1, 0, 1)
UPDATE_TRIGGER = Path(1, 0, 8)

LogSink = Callable[[str, str], None]  # (level "inf"/"wrn"/"err", message)
SocketFactory = Callable[[], Awaitable[socket.socket]]  # a bound IPv6 (v4-mapped) UDP socket


class State(enum.Enum):
    IDLE = "idle"  # no server configured
    REGISTERING = "registering"
    REGISTERED = "registered"
    BACKOFF = "backoff"  # waiting before the next Register attempt
    STOPPED = "stopped"


@dataclass(frozen=True)
class ClientEvent:
    kind: str  # "registered", "updated", "deregistered", "failed"
    endpoint: str
    server: str
    detail: str = ""


class RegistrationFailed(Exception):
    """A Register/Update that got no usable answer; the message says what was seen."""


class ServerURIError(ValueError):
    """A server URI the node cannot use."""


def parse_server_uri(uri: str, secured: bool | None = None) -> tuple[str, int]:
    """``coap://HOST:PORT`` (or ``coaps://`` for DTLS) into (host, port); the port defaults to 5683 (5684).

    ``secured``: whether the node has a pre-shared key; coaps:// needs one, and a node
    with one uses coaps:// only (None: either scheme).
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("coap", "coaps"):
        raise ServerURIError(f"server URI {uri!r}: scheme must be coap:// or coaps:// (DTLS-PSK)")
    if secured is False and parts.scheme == "coaps":
        raise ServerURIError(f"server URI {uri!r}: coaps:// needs a pre-shared key (--psk IDENTITY:HEXKEY)")
    if secured and parts.scheme == "coap":
        raise ServerURIError(f"server URI {uri!r}: this node has a pre-shared key and registers over coaps:// only")
    try:
        port = parts.port or (5684 if parts.scheme == "coaps" else 5683)
    except ValueError:
        raise ServerURIError(f"server URI {uri!r}: the port is not a number 1..65535") from None
    if not parts.hostname:
        raise ServerURIError(f"server URI {uri!r}: no host, expected coap://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ServerURIError(f"server URI {uri!r}: expected coap://HOST:PORT without path or query")
    return parts.hostname, port


class LwM2MClient:
    def __init__(
        self,
        endpoint: str,
        store: ObjectStore,
        clock: VirtualClock,
        *,
        lifetime: int = 300,
        host: str = "127.0.0.1",
        request_timeout: float = 5.0,
        backoff_initial: float = 1.0,
        backoff_cap: float = 60.0,
        transmission: TransmissionParameters | None = None,
        console_log: LogSink | None = None,
        log: logging.Logger | None = None,
        lwm2m_version: str = LWM2M_VERSION,
        formats: tuple[int, ...] = (SENML_CBOR, SENML_JSON, TLV),
        announce: bool = True,
        psk: PskCredential | None = None,
        socket_factory: SocketFactory | None = None,
    ):
        """``psk``: DTLS-PSK credential; the node then registers to coaps:// servers only (security mode 0)."""
        if lifetime < 1:
            raise ValueError(f"lifetime must be at least 1 s, got {lifetime}")
        if lwm2m_version not in LWM2M_VERSIONS:
            raise ValueError(f"LwM2M version {lwm2m_version!r}: the node speaks {' or '.join(LWM2M_VERSIONS)}")
        if lwm2m_version == "1.0" and TLV not in formats:
            raise ValueError("an LwM2M 1.0 node must speak TLV (1.0 makes it mandatory)")
        self.lwm2m_version = lwm2m_version
        self.version = lwm2m_version  # what it registers with now: 1.0 after a 1.0 server refused 1.1
        self.formats = tuple(formats)
        self.announce = announce  # False: a client that names no format on its root link (the server must find out)
        self.endpoint = endpoint
        self.store = store
        self.clock = clock
        self.lifetime = int(lifetime)
        self.host = host
        self.socket_factory = socket_factory  # a bound UDP socket made elsewhere (a fleet's namespace) instead of (host, 0)
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.transmission = transmission or TransmissionParameters()
        self._tuning = self.transmission.tuning()
        self.log = log or logging.getLogger(f"hil.device.{endpoint}")
        self._console_log = console_log
        self.server: str | None = None
        self.state = State.IDLE
        self.location: tuple[str, ...] = ()
        self.registered = asyncio.Event()
        self.registrations = 0  # successful Registers so far
        self.updates = 0
        self.last_error = ""
        self.context: aiocoap.Context | None = None
        self.site: DeviceSite | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._links_dirty = False
        self._lifetime_dirty = False
        self._listeners: list[Callable[[ClientEvent], None]] = []
        self._remove_store_listener: Callable[[], None] | None = None
        if psk is not None and socket_factory is not None:
            raise ValueError(f"{endpoint}: a DTLS-PSK node needs a socket of its own; a socket_factory gives a NoSec one")
        self.psk = psk
        # aiocoap keeps a DTLS session only while something refers to it: this does, so the
        # server's requests find the session the node registered over
        self._session: object | None = None

    # ------------------------------------------------------------------ socket

    async def open(self) -> None:
        """Bind the node's socket and start serving the object store on it."""
        self.site = DeviceSite(self.store, self.clock, self.log, formats=self.formats, default_format=self.default_format)
        if self.socket_factory is not None:
            # a socket bound elsewhere (a fleet's network namespace); NoSec only (checked in __init__)
            sock = await self.socket_factory()
            self.context = await server_context_on(sock, self.site, f"hil.device.{self.endpoint}.coap")
        else:
            self.context = await aiocoap.Context.create_server_context(
                self.site,
                bind=(self.host, 0),
                # tinydtls: aiocoap's DTLS client; the server's requests come back over the session it opens
                transports=["udp6", "tinydtls"] if self.psk is not None else ["udp6"],
                loggername=f"hil.device.{self.endpoint}.coap",
            )
        self._remove_store_listener = self.store.add_listener(self._on_store_change)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the node talks to its server from (its DTLS session's socket when secured)."""
        if self.context is None:
            raise RuntimeError(f"node {self.endpoint}: the client socket is not open")
        transport = getattr(self._session, "_transport", None)
        if transport is not None and transport.get_extra_info("socket") is not None:
            host, port = transport.get_extra_info("socket").getsockname()[:2]
            return host.removeprefix("::ffff:"), port
        sock = self.context.request_interfaces[0].token_interface.message_interface.transport.get_extra_info("socket")
        host, port = sock.getsockname()[:2]
        return (host.removeprefix("::ffff:")), port

    # ------------------------------------------------------------------ formats

    @property
    def announced_format(self) -> int | None:
        """The ``ct`` of the root link: the preferred format if it is an optional one, else none."""
        preferred = self.default_format()
        return preferred if self.announce and preferred in ANNOUNCEABLE[self.version] else None

    def default_format(self) -> int:
        """Format of answers to requests without Accept: TLV to a 1.0 server, else the preferred one."""
        return TLV if self.version == "1.0" else self.formats[0]

    @property
    def send_format(self) -> int | None:
        """The SenML format Send uses (None: the node speaks no SenML, or registered as 1.0)."""
        if self.version == "1.0":
            return None
        return next((f for f in self.formats if f in SENML_FORMATS), None)

    # ------------------------------------------------------------------ control

    def start(self, server: str, endpoint: str | None = None) -> None:
        """Begin registering to ``server`` (coap://HOST:PORT, coaps:// with a PSK); a previous server is dropped."""
        host, port = parse_server_uri(server, secured=self.psk is not None)
        if self.context is None:
            raise RuntimeError(f"node {self.endpoint}: open() the client before start()")
        if self._task is not None:
            self._task.cancel()
        if endpoint:
            self.endpoint = endpoint
        self.server = server.rstrip("/")
        if self.psk is not None:
            hostinfo = f"[{host}]" if ":" in host else host
            self.context.client_credentials.load_from_dict({f"coaps://{hostinfo}:{port}/*": {"dtls": {
                "psk": self.psk.key_bytes, "client-identity": self.psk.identity_bytes}}})
        self.version = self.lwm2m_version
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lwm2m-client-{self.endpoint}")

    def trigger_update(self, links: bool = False) -> None:
        """Send an Update soon (with the object links when ``links``)."""
        self._links_dirty |= links
        self._wake.set()

    def add_listener(self, listener: Callable[[ClientEvent], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_registered(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.registered.wait()
        except TimeoutError:
            raise TimeoutError(
                f"node {self.endpoint} did not register to {self.server or '(no server configured)'} within {timeout} s: "
                f"state {self.state.value}, last error: {self.last_error or 'none'}"
            ) from None

    async def stop(self, deregister: bool = True) -> None:
        """Stop the registration task and, when registered and asked to, de-register."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if deregister and self.location and self.context is not None and self.server:
            await self._deregister()
        self.location = ()
        self.registered.clear()
        self.state = State.STOPPED

    async def close(self, deregister: bool = True) -> None:
        await self.stop(deregister)
        self._session = None
        if self._remove_store_listener is not None:
            self._remove_store_listener()
            self._remove_store_listener = None
        if self.site is not None:
            self.site.close()
        context, self.context = self.context, None
        if context is not None:
            await context.shutdown()

    # ------------------------------------------------------------------ state machine

    async def _run(self) -> None:
        delay = self.backoff_initial
        while True:
            self.state = State.REGISTERING
            try:
                await self._register()
                delay = self.backoff_initial
                await self._stay_registered()
                self._forget_registration()
                continue  # an Update failed: register again at once
            except RegistrationFailed as exc:
                self._failed(f"Registration failed: {exc}; retrying in {delay:g} s")
            except Exception as exc:  # a bug here must not leave the node silently unregistered
                self.log.exception("%s: registration step failed", self.endpoint)
                self._failed(f"Registration error: {type(exc).__name__}: {exc}; retrying in {delay:g} s")
            self._forget_registration()
            self.state = State.BACKOFF
            await self.clock.sleep(delay)
            delay = min(delay * 2, self.backoff_cap)

    def _forget_registration(self) -> None:
        self.registered.clear()
        self.location = ()
        # a failed exchange may mean the server lost the DTLS session (a restart): shake hands anew
        session, self._session = self._session, None
        if session is not None and hasattr(session, "shutdown"):
            session.shutdown()

    async def _stay_registered(self) -> None:
        """Send Updates until one fails; then return so the node registers again."""
        while True:
            await self._sleep_until(self.clock.now() + self.lifetime * UPDATE_AT)
            try:
                await self._update()
            except RegistrationFailed as exc:
                self._failed(f"Update failed: {exc}; registering again")
                return

    async def _sleep_until(self, when: float) -> None:
        """Until ``when`` on the node's clock, or until something asks for an Update earlier."""
        if self._wake.is_set():
            self._wake.clear()
            return
        handle: TimerHandle = self.clock.call_at(when, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            handle.cancel()
            self._wake.clear()

    async def _register(self) -> None:
        self._links_dirty = self._lifetime_dirty = False
        self._wake.clear()
        self.lifetime = self._current_lifetime()
        response = await self._request(self._register_request(), "Register")
        if response.code == Code.PRECONDITION_FAILED and self.version != "1.0" and TLV in self.formats:
            self._failed(f"Registration refused: server answered {response.code}{_diagnostic(response)}; "
                         "registering as LwM2M 1.0")
            self.version = "1.0"
            response = await self._request(self._register_request(), "Register")
        if response.code != Code.CREATED:
            raise RegistrationFailed(f"server answered {response.code}{_diagnostic(response)}")
        location = tuple(s for s in response.opt.location_path if s)
        if not location:
            raise RegistrationFailed("server answered 2.01 without a Location-Path")
        self.location = location
        self.registrations += 1
        self.last_error = ""
        self.state = State.REGISTERED
        self.registered.set()
        self._console("inf", f"Registration Done (EP='{self.endpoint}')")
        self.log.info("%s registered to %s as /%s", self.endpoint, self.server, "/".join(location))
        self._emit("registered", "/" + "/".join(location))

    def _register_request(self) -> Message:
        query = f"ep={self.endpoint}&lt={self.lifetime}&lwm2m={self.version}&b=U"
        return Message(code=Code.POST, uri=f"{self.server}/rd?{query}", payload=self._links().encode(), content_format=LINK)

    def _links(self) -> str:
        # LwM2M 1.1 Core 6.2.1: the Security object is never part of the Register list
        objects = {obj: inst for obj, inst in self.store.objects().items() if obj != SECURITY_OBJECT}
        return registration_links(objects, content_format=self.announced_format)

    async def send(self, content: Content, timeout: float | None = None) -> None:
        """Send (LwM2M 1.1): POST the values to /dp; :class:`RegistrationFailed` says why it did not arrive."""
        fmt = self.send_format
        if fmt is None:
            raise RegistrationFailed(f"Send needs SenML and LwM2M 1.1; {self.endpoint} is registered as "
                                     f"{self.version} speaking formats {list(self.formats)}")
        if not self.location or self.context is None or not self.server:
            raise RegistrationFailed(f"Send from {self.endpoint}: not registered")
        request = Message(code=Code.POST, uri=f"{self.server}/dp", payload=codecs.encode(content, None, fmt), content_format=fmt)
        response = await self._request(request, "Send", timeout)
        if response.code != Code.CHANGED:
            raise RegistrationFailed(f"Send to {self.server}: server answered {response.code}{_diagnostic(response)}")

    async def _update(self) -> None:
        links = self._links_dirty
        lifetime_changed = self._lifetime_dirty
        self._links_dirty = self._lifetime_dirty = False
        query = ""
        if lifetime_changed:
            self.lifetime = self._current_lifetime()
            query = f"?lt={self.lifetime}"
        request = Message(code=Code.POST, uri=f"{self.server}/{'/'.join(self.location)}{query}")
        if links:
            request.payload = self._links().encode()
            request.opt.content_format = LINK
        response = await self._request(request, "Update")
        if response.code == Code.NOT_FOUND:
            raise RegistrationFailed("the server does not know the registration (4.04)")
        if not response.code.is_successful():
            raise RegistrationFailed(f"server answered {response.code}{_diagnostic(response)}")
        self.updates += 1
        self._console("inf", "Update Done")
        self._emit("updated", "with links" if links else "")

    async def _deregister(self) -> None:
        request = Message(code=Code.DELETE, uri=f"{self.server}/{'/'.join(self.location)}")
        try:
            response = await self._request(request, "De-register")
        except RegistrationFailed as exc:
            self._failed(f"De-register failed: {exc}")
            return
        if response.code.is_successful():
            self._console("inf", "Deregistration success")
        else:
            self._failed(f"De-register answered {response.code}{_diagnostic(response)}")
        self._emit("deregistered", str(response.code))

    async def _request(self, request: Message, what: str, timeout: float | None = None) -> Message:
        assert self.context is not None
        timeout = self.request_timeout if timeout is None else timeout
        request.transport_tuning = self._tuning
        response = self.context.request(request).response
        # aiocoap must finish its own exchange (cancelling its future breaks it when an
        # answer comes late), so wait on a shield and collect the outcome when it comes
        response.add_done_callback(_consume)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the answer, and the client task would then never stop
            async with asyncio.timeout(timeout):
                answer = await asyncio.shield(response)
            if self.psk is not None:
                self._session = answer.remote
            return answer
        except TimeoutError:
            if self._handshake_pending():
                raise RegistrationFailed(f"{what} to {self.server}: the DTLS handshake did not complete within {timeout:g} s "
                                         f"(wrong PSK identity or key, or no DTLS server there)") from None
            raise RegistrationFailed(f"{what} to {self.server}: no answer within {timeout:g} s") from None
        except coap_error.Error as exc:
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
            raise RegistrationFailed(f"{what} to {self.server}: {reason}") from None
        except OSError as exc:
            raise RegistrationFailed(f"{what} to {self.server}: {exc}") from None

    # ------------------------------------------------------------------ plumbing

    def _handshake_pending(self) -> bool:
        """Whether a DTLS session of this node is still shaking hands (aiocoap queues requests meanwhile)."""
        if self.psk is None or self.context is None:
            return False
        for tokens in self.context.request_interfaces[1:]:
            pool = getattr(getattr(getattr(tokens, "token_interface", None), "message_interface", None), "_pool", None)
            if pool is not None and any(getattr(c, "_queue", None) is not None for c in list(pool.values())):
                return True
        return False

    def _current_lifetime(self) -> int:
        try:
            value = self.store.get(LIFETIME)
        except LwM2MError:  # /1/0/1 absent: keep the configured lifetime
            return self.lifetime
        return value if isinstance(value, int) and value > 0 else self.lifetime

    def _on_store_change(self, change: Change) -> None:
        if change.kind in ("created", "deleted"):
            self.trigger_update(links=True)
        elif change.path == LIFETIME:
            self._lifetime_dirty = True
            self._wake.set()

    def _failed(self, message: str) -> None:
        self.last_error = message
        self._console("wrn", message)
        self.log.info("%s: %s", self.endpoint, message)
        self._emit("failed", message)

    def _console(self, level: str, message: str) -> None:
        if self._console_log is not None:
            self._console_log(level, message)

    def _emit(self, kind: str, detail: str) -> None:
        event = ClientEvent(kind, self.endpoint, self.server or "", detail)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.exception("registration listener failed on %s", event)


async def cancel_and_wait(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again should it carry on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("hil.device").debug("task %s ended with %r", task.get_name(), task.exception())


def _consume(future: asyncio.Future[Message]) -> None:
    if not future.cancelled():
        future.exception()


def _diagnostic(response: Message) -> str:
    if not response.payload:
        return ""
    return f" ({bytes(response.payload).decode('utf-8', 'replace')})"
