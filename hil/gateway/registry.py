"""Registrations held by the gateway, their lifetimes and the events they raise.

The registry knows nothing about CoAP: the registration interface
(:mod:`hil.gateway.rd`) feeds it, and listeners (the CLI, the SDF/MQTT and
REST bridges, tests) hear about every change as a :class:`RegistrationEvent`.

Lifetime expiry uses one event-loop timer handle per registration, re-armed on
every update, so a thousand registrations cost a thousand heap entries and no
running tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Literal

from ..lwm2m.link import LWM2M_ROOT_RT, Link, available_instances
from .errors import GatewayError, GatewayTimeout, describe_endpoints

EventKind = Literal["registered", "updated", "deregistered", "expired", "unreachable", "reachable"]
GONE: tuple[str, ...] = ("deregistered", "expired")  # the kinds after which the registration no longer exists
Listener = Callable[["RegistrationEvent"], None]


@dataclass(frozen=True)
class Registration:
    """One registered LwM2M client, as it stands after its last Register/Update.

    Immutable: an Update produces a new instance, so an event keeps the
    state it announced.
    """

    endpoint: str
    registration_id: str
    address: tuple[str, int]
    lifetime: int
    lwm2m_version: str
    binding: str
    object_links: list[Link]
    registered_at: float  # wall clock, time.time()
    updated_at: float
    root_path: str = ""  # alternate LwM2M root (e.g. "/lwm2m"), "" for "/"
    queue_mode: bool = False
    sms_number: str | None = None
    # aiocoap remote the registration came from; device requests go back to it.
    remote: Any = field(default=None, repr=False, compare=False)
    # False from an ICMP error or a request that used up its retransmissions
    # until the device is heard from again; unreachable_reason says what was seen
    reachable: bool = True
    unreachable_reason: str = ""

    @cached_property  # frozen, so computing once is safe; dataclasses.replace starts afresh
    def available_instances(self) -> dict[int, list[int]]:
        return available_instances(self.object_links)

    @cached_property
    def object_paths(self) -> list[str]:
        """``["/1/0", "/3/0", "/9"]``: every announced instance, or the bare object when it has none."""
        out: list[str] = []
        for obj, instances in self.available_instances.items():
            if instances:
                out.extend(f"/{obj}/{i}" for i in instances)
            else:
                out.append(f"/{obj}")
        return out

    @property
    def address_text(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class RegistrationEvent:
    kind: EventKind
    registration: Registration
    reason: str = ""  # why a registration went away, e.g. "replaced by a new registration"

    @property
    def endpoint(self) -> str:
        return self.registration.endpoint


def root_path_of(links: list[Link]) -> str:
    """The alternate root announced with ``rt="oma.lwm2m"``, without trailing slash ("" for "/")."""
    for link in links:
        if LWM2M_ROOT_RT in (link.attrs.get("rt") or "").split():
            return link.path.rstrip("/")
    return ""


class Subscription:
    """Queue of registration events, fed from the moment it was created.

    ``async for event in sub`` ends when the subscription or the gateway is
    closed; ``await sub.get(timeout)`` waits for the next one.
    """

    _CLOSED = object()

    def __init__(self, registry: "Registry"):
        self._registry = registry
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        self.seen: list[RegistrationEvent] = []
        registry.add_listener(self._push)

    def _push(self, event: RegistrationEvent) -> None:
        self._queue.put_nowait(event)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._registry.remove_listener(self._push)
            self._registry._subscriptions.discard(self)
            self._queue.put_nowait(self._CLOSED)

    async def get(self, timeout: float = 5.0) -> RegistrationEvent:
        """Next event; raises :class:`GatewayTimeout` listing the events seen so far."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            seen = ", ".join(f"{e.kind} {e.endpoint}" for e in self.seen[-10:]) or "none"
            raise GatewayTimeout(f"no registration event within {timeout} s; last events seen: {seen}", timeout=timeout) from None
        if item is self._CLOSED:
            self._queue.put_nowait(item)  # later get() calls fail the same way
            raise EOFError("the registration event subscription is closed")
        self.seen.append(item)
        return item

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> RegistrationEvent:
        item = await self._queue.get()
        if item is self._CLOSED:
            self._queue.put_nowait(item)
            raise StopAsyncIteration
        self.seen.append(item)
        return item

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Registry:
    """Registrations by endpoint and by id, with expiry and event fan-out."""

    def __init__(self, expiry_grace: float = 2.0, log: logging.Logger | None = None):
        if expiry_grace < 0:
            raise ValueError(f"expiry_grace must be >= 0 seconds, got {expiry_grace}")
        self.expiry_grace = expiry_grace
        self.log = log or logging.getLogger("hil.gateway")
        self._by_endpoint: dict[str, Registration] = {}
        self._by_id: dict[str, Registration] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._listeners: list[Listener] = []
        self._waiters: dict[str, list[asyncio.Future[Registration]]] = {}
        self._subscriptions: set[Subscription] = set()

    # ------------------------------------------------------------------ queries

    @property
    def by_endpoint(self) -> dict[str, Registration]:
        return self._by_endpoint

    def get_by_id(self, registration_id: str) -> Registration | None:
        return self._by_id.get(registration_id)

    def __len__(self) -> int:
        return len(self._by_endpoint)

    # ------------------------------------------------------------------ changes

    def new_id(self) -> str:
        while True:
            rid = secrets.token_hex(5)
            if rid not in self._by_id:
                return rid

    def register(self, registration: Registration, *, expires_in: float | None = None, reason: str = "") -> Registration:
        """Add a registration; one already held for the same endpoint is dropped first.

        ``expires_in`` (seconds) for one whose lifetime started earlier, e.g. restored from the database.
        """
        old = self._by_endpoint.get(registration.endpoint)
        if old is not None:
            self._drop(old, "deregistered", "replaced by a new registration")
        self._by_endpoint[registration.endpoint] = registration
        self._by_id[registration.registration_id] = registration
        self._arm(registration, expires_in)
        self._emit(RegistrationEvent("registered", registration, reason))
        for waiter in self._waiters.pop(registration.endpoint, []):
            if not waiter.done():
                waiter.set_result(registration)
        return registration

    def update(self, registration_id: str, **changes: Any) -> Registration | None:
        """Apply an Update; None when the id is unknown (expired or never issued)."""
        old = self._by_id.get(registration_id)
        if old is None:
            return None
        new = dataclasses.replace(old, updated_at=time.time(), **changes)
        self._by_endpoint[new.endpoint] = new
        self._by_id[registration_id] = new
        self._arm(new)
        self._emit(RegistrationEvent("updated", new))
        return new

    def set_reachable(self, registration_id: str, reachable: bool, reason: str = "") -> Registration | None:
        """Mark a registration (un)reachable; emits ``unreachable``/``reachable`` when that changes."""
        old = self._by_id.get(registration_id)
        if old is None or (old.reachable == reachable and (reachable or old.unreachable_reason == reason)):
            return old
        new = dataclasses.replace(old, reachable=reachable, unreachable_reason="" if reachable else reason)
        self._by_endpoint[new.endpoint] = new
        self._by_id[registration_id] = new
        if old.reachable != reachable:
            self._emit(RegistrationEvent("reachable" if reachable else "unreachable", new, reason))
        return new

    def deregister(self, registration_id: str) -> Registration | None:
        reg = self._by_id.get(registration_id)
        if reg is not None:
            self._drop(reg, "deregistered", "the client de-registered")
        return reg

    def _expire(self, registration_id: str) -> None:
        reg = self._by_id.get(registration_id)
        if reg is not None:
            self._drop(reg, "expired", f"lifetime of {reg.lifetime} s passed without an update")

    def _drop(self, reg: Registration, kind: EventKind, reason: str) -> None:
        del self._by_id[reg.registration_id]
        if self._by_endpoint.get(reg.endpoint) is reg:
            del self._by_endpoint[reg.endpoint]
        timer = self._timers.pop(reg.registration_id, None)
        if timer is not None:
            timer.cancel()
        self._emit(RegistrationEvent(kind, reg, reason))

    def _arm(self, reg: Registration, expires_in: float | None = None) -> None:
        timer = self._timers.pop(reg.registration_id, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        delay = reg.lifetime + self.expiry_grace if expires_in is None else max(0.0, expires_in)
        self._timers[reg.registration_id] = loop.call_later(delay, self._expire, reg.registration_id)

    # ------------------------------------------------------------------ events

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` synchronously on every event; returns a remover."""
        self._listeners.append(listener)
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subscriptions.add(sub)
        return sub

    def _emit(self, event: RegistrationEvent) -> None:
        reg = event.registration
        self.log.info(
            "%s %s (id %s) from %s, lifetime %d s, lwm2m %s, binding %s%s",
            event.kind,
            reg.endpoint,
            reg.registration_id,
            reg.address_text,
            reg.lifetime,
            reg.lwm2m_version,
            reg.binding,
            f": {event.reason}" if event.reason else "",
        )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # one broken bridge must not stop the others or the registration itself
                self.log.exception("registration listener %r failed on %s %s", listener, event.kind, reg.endpoint)

    async def wait_for(self, endpoint: str, timeout: float) -> Registration:
        reg = self._by_endpoint.get(endpoint)
        if reg is not None:
            return reg
        waiter: asyncio.Future[Registration] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(endpoint, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            raise GatewayTimeout(
                f"endpoint {endpoint!r} did not register within {timeout} s; "
                f"registered: {describe_endpoints(sorted(self._by_endpoint))}",
                endpoint=endpoint,
                timeout=timeout,
            ) from None
        finally:
            waiters = self._waiters.get(endpoint)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[endpoint]

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for sub in list(self._subscriptions):
            sub.close()
        self._subscriptions.clear()
        for endpoint, waiters in self._waiters.items():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(GatewayError(f"gateway closed while waiting for {endpoint!r} to register"))
        self._waiters.clear()
