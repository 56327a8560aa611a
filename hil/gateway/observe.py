"""LwM2M Observe from the gateway side: one :class:`Observation` per observed path.

Notifications are queued without loss, decoded by their Content-Format and
handed out in arrival order; the answer to the Observe request itself is the
first one. The request bypasses aiocoap's blockwise layer because that layer
relays notifications through an iterator that keeps only the latest; a
notification that arrives as the first of several Block2 blocks is completed
with a plain (blockwise) read instead.

Cancelling is active: the gateway sends the device a GET with Observe=1 and
the observation's token (RFC 7641 section 3.6), and forgets the token, so any
notification still coming is answered with a Reset (confirmable or not).
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable, Generator, Protocol

from aiocoap import Message
from aiocoap import error as coap_error

from ..lwm2m.model import Content, Path
from .answers import decode, raise_for_code
from .errors import (
    GatewayError,
    GatewayTimeout,
    GatewayTransportError,
)
from .formats import kind_of

NotificationListener = Callable[["Notification"], None]


class ObservationHost(Protocol):
    """The gateway as its observations see it (:class:`hil.gateway.server.Gateway` is one)."""

    log: logging.Logger

    def observe_request(self, endpoint: str, path: Path, fmt: int | None) -> tuple[str, Any]:
        """Send GET with Observe: (registration id, aiocoap's request)."""

    async def negotiate(self, endpoint: str, path: Path | None, kind: str, attempt: Callable[[int], Awaitable[Any]]) -> Any:
        """``attempt(format)`` in the format chosen for the device, once more in the next after a 4.06/4.15."""

    def report(self, notification: "Notification") -> None:
        """Hand a notification to the gateway's report listeners."""

    async def await_answer(
        self, pending: Awaitable[Message], endpoint: str, path: Path, operation: str, timeout: float | None
    ) -> Message:
        """The device's successful answer to ``pending``, or the GatewayError it amounts to."""

    async def read_message(self, endpoint: str, path: Path, operation: str, fmt: int | None, timeout: float | None) -> Message:
        """A plain (blockwise) read's successful answer, undecoded."""

    def track_observation(self, observation: "Observation") -> bool:
        """Count it as live; False when its registration is already gone."""

    def untrack_observation(self, observation: "Observation") -> None: ...

    def deregister_observation(self, request: Any) -> None:
        """Tell the device to stop: GET with Observe=1 and the token of ``request``."""


@dataclass(frozen=True)
class Notification:
    """Values a device reported: a notification of an observation, or a Send (``kind`` "send").

    ``path`` is the observed path; None for what spans paths (Observe-Composite, Send).
    """

    endpoint: str
    path: Path | None
    content: Content
    timestamp: float  # wall clock at arrival, time.time()
    sequence: int | None  # the Observe option value; None on a final notification and a Send
    content_format: int | None
    kind: str = "notify"  # "notify" or "send"
    #: the CoAP message it came in (ID, token): how the emulator's side finds when it left the device
    message_id: int | None = None
    token: bytes = b""

    def value(self, path: Path | str | None = None) -> Any:
        """The value at ``path`` (default: the observed path itself)."""
        if path is None and self.path is None:
            raise KeyError(f"the {self.kind} from {self.endpoint} spans {len(self.content)} path(s): name one")
        key = self.path if path is None else Path.parse(path)
        try:
            return self.content[key]
        except KeyError:
            raise KeyError(
                f"{key} is not in the notification from {self.endpoint} for {self.path}; "
                f"it holds {', '.join(str(p) for p in self.content) or 'nothing'}"
            ) from None


class ObservationRefused(GatewayError):
    """The device answered the Observe request without establishing an observation."""


class Observation:
    """``async with gateway.observe(ep, path) as obs: async for n in obs: ...``

    Also ``obs = await gateway.observe(ep, path)`` (then ``obs.cancel()``).
    Iteration ends when the observation is cancelled, the registration goes
    away or the gateway closes; it raises when the device ends it with an error.
    """

    _END = object()

    def __init__(self, gateway: ObservationHost, endpoint: str, path: Path | None, fmt: int | None, timeout: float | None):
        """``fmt`` None: the gateway chooses (and falls back once after a 4.06/4.15)."""
        self._gateway = gateway
        self.endpoint = endpoint
        self.path = path
        self._fmt = fmt
        self._timeout = timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._request: Any = None  # aiocoap request; holds the ClientObservation alive
        self._listeners: list[NotificationListener] = []
        self.registration_id: str | None = None
        self.latest: Notification | None = None
        self.received = 0
        self.ended: str | None = None  # why the observation stopped, once it has
        self._failure: Exception | None = None
        self._started = False
        self._fetches: set[asyncio.Task[None]] = set()
        self.log: logging.Logger = gateway.log

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> "Observation":
        if self._started:
            return self
        self._started = True
        try:
            if self._fmt is not None:
                await self._begin(self._fmt)
            else:
                await self._gateway.negotiate(self.endpoint, self.path, self._kind(), self._begin)
        except BaseException:
            self._finish("the observation could not start")
            raise
        if not self._gateway.track_observation(self):
            # the registration went away while the first answer was on its way
            self._finish("the registration ended while the observation started")
        return self

    def _kind(self) -> str:
        assert self.path is not None
        return kind_of(self.path)

    def _open(self, fmt: int | None) -> tuple[str, Any]:
        """Send the Observe request: (registration id, aiocoap's request)."""
        assert self.path is not None
        return self._gateway.observe_request(self.endpoint, self.path, fmt)

    async def _begin(self, fmt: int | None) -> None:
        self._fmt = fmt
        self.registration_id, self._request = self._open(fmt)
        await self._first_answer()

    async def _first_answer(self) -> None:
        response = await self._gateway.await_answer(self._request.response, self.endpoint, self._where(), "observe", self._timeout)
        if response.opt.observe is None:
            raise ObservationRefused(
                f"{self.endpoint}: observe {self.path} answered {response.code} without an Observe option; "
                "the device did not start an observation"
            )
        if _partial(response):
            self._deliver(await self._read_whole(), response.opt.observe)
        else:
            self._deliver(response, response.opt.observe)
        with warnings.catch_warnings():
            # The callback interface is the lossless one; aiocoap marks it deprecated
            # in favour of an iterator that drops notifications arriving back to back.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._request.observation.register_callback(self._on_response)
            self._request.observation.register_errback(self._on_error)

    def _where(self) -> Path | str:
        """What the observation is of, for messages."""
        assert self.path is not None
        return self.path

    def __await__(self) -> Generator[Any, None, Observation]:
        return self.start().__await__()

    async def __aenter__(self) -> "Observation":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()

    def cancel(self, reason: str = "cancelled by the gateway user") -> None:
        """Stop observing; iteration ends after the notifications already queued."""
        self._finish(reason)

    @property
    def active(self) -> bool:
        return self._started and self.ended is None

    def add_listener(self, listener: NotificationListener) -> Callable[[], None]:
        """Call ``listener(notification)`` for every notification; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # ------------------------------------------------------------------ consuming

    def __aiter__(self) -> "Observation":
        return self

    async def __anext__(self) -> Notification:
        item = await self._queue.get()
        return self._unwrap(item)

    async def next(self, timeout: float = 5.0) -> Notification:
        """Next notification, or :class:`GatewayTimeout` naming the last one seen."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            last = f"last value {self.latest.content}" if self.latest else "nothing received"
            raise GatewayTimeout(
                f"{self.endpoint}: no notification for {self.path} within {timeout} s "
                f"({self.received} received, {last})",
                endpoint=self.endpoint,
                path=str(self.path),
                timeout=timeout,
            ) from None
        try:
            return self._unwrap(item)
        except StopAsyncIteration:
            raise GatewayError(f"{self.endpoint}: observation of {self.path} ended: {self.ended}") from None

    def _unwrap(self, item: Any) -> Notification:
        if item is self._END:
            self._queue.put_nowait(item)  # every later read ends too
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            raise StopAsyncIteration
        return item

    # ------------------------------------------------------------------ feeding

    def _on_response(self, response: Message) -> None:
        if self.ended is not None:
            return
        try:
            raise_for_code(response, self.endpoint, self._where(), "notification of")
        except GatewayError as exc:
            # an error notification is always the last one; aiocoap ends its side itself
            self._finish(f"the device ended it: {exc}", exc, device_ended=True)
            return
        try:
            if _partial(response):
                task = asyncio.get_running_loop().create_task(self._complete(response.opt.observe))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
            else:
                self._deliver(response, response.opt.observe)
        except GatewayError as exc:
            self._finish(f"a notification could not be used: {exc}", exc)

    async def _read_whole(self) -> Message:
        assert self.path is not None
        return await self._gateway.read_message(
            self.endpoint, self.path, "read (blockwise notification of)", self._fmt, self._timeout
        )

    async def _complete(self, sequence: int | None) -> None:
        try:
            whole = await self._read_whole()
            if self.ended is None:
                self._deliver(whole, sequence)
        except GatewayError as exc:
            self._finish(f"completing a blockwise notification failed: {exc}", exc)

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, (coap_error.NotObservable, coap_error.ObservationCancelled)):
            self._finish("the device ended the observation", device_ended=True)
        elif isinstance(exc, coap_error.LibraryShutdown):
            self._finish("the gateway closed", device_ended=True)
        else:
            failure = GatewayTransportError(self.endpoint, str(self.path), str(exc) or type(exc).__name__, "observe")
            self._finish(str(failure), failure, device_ended=True)

    def _deliver(self, response: Message, sequence: int | None) -> None:
        content = decode(response, self.endpoint, self.path, self._where())
        ct = response.opt.content_format
        note = Notification(
            endpoint=self.endpoint,
            path=self.path,
            content=content,
            timestamp=time.time(),
            sequence=sequence,
            content_format=None if ct is None else int(ct),
            message_id=response.mid,
            token=bytes(response.token or b""),
        )
        self.latest = note
        self.received += 1
        self._queue.put_nowait(note)
        for listener in list(self._listeners):
            try:
                listener(note)
            except Exception:
                self.log.exception("notification listener %r failed for %s %s", listener, self.endpoint, self.path)
        self._gateway.report(note)

    def _finish(self, reason: str, failure: Exception | None = None, device_ended: bool = False) -> None:
        """End the observation; ``device_ended`` when aiocoap is already ending its side."""
        if self.ended is not None:
            return
        self.ended = reason
        self._failure = failure
        self._gateway.untrack_observation(self)
        obs = getattr(self._request, "observation", None)
        if not device_ended and obs is not None and not obs.cancelled:
            obs.cancel()
            # aiocoap only drops the token when the next notification arrives, so
            # that one would still be acknowledged; dropping it now makes the
            # device's very next notification meet a Reset. Deferred: this may
            # run inside aiocoap's own notification callback.
            stop_interest = getattr(self._request, "_stop_interest", None)
            if callable(stop_interest):
                asyncio.get_running_loop().call_soon(stop_interest)
            self._gateway.deregister_observation(self._request)
        for task in list(self._fetches):
            task.cancel()
        self._queue.put_nowait(self._END)
        self.log.debug("observation of %s %s ended: %s", self.endpoint, self.path, reason)


def _partial(response: Message) -> bool:
    block2 = response.opt.block2
    return block2 is not None and bool(block2.more)
