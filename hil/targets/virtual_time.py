"""Virtual time for emulated devices: idle device time is skipped only while nothing is in flight.

An emulator can run a device's idle time (the CPU waiting for its next
timer) as fast as the host allows, so a service's 30 s sleep costs a
fraction of a second. That is safe only while no exchange with the device is
open: a device waiting for the gateway's answer, or for the next block of a
transfer, counts its own timeouts in device time, and if device time raced
ahead while the host (a slower, shared machine) worked, those timers would
run out early. So the rule, which :class:`TimeGovernor` enforces per device:

    skip idle time only while the gateway has no exchange in flight with the
    device (:class:`hil.gateway.in_flight.Exchanges`) and the device's last
    message has had ``settle`` wall seconds to reach the gateway and be
    answered; otherwise keep device time to the host's pace.

How an emulator skips and keeps pace is its :class:`EmulatorClock`
(:mod:`hil.targets.renode_clock`, :mod:`hil.targets.qemu_clock`); the governor
only switches it. A clock stops skipping by itself when a message leaves the
device (it tells the governor through ``on_sent``), so a message never waits
for the host while device time races. No clock ever resumes a machine that
someone else paused (a debugger at a breakpoint): device time then stands
still, and the device's timers with it. docs/architecture.md ("Time") says
what each backend does and where it falls short.

:class:`TxLog` keeps the device time at which each CoAP message left the
device, as the emulator saw it, so a reading carries the time it was produced
rather than the time it reached the host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..net.ipv4 import PacketError, parse_ipv4, parse_udp

#: wall seconds a message from the device gets to reach the gateway (and its answer to get back) before
#: skipping resumes; far below CoAP's 2 s ACK_TIMEOUT
SETTLE = 0.1

MessageKey = tuple[int, bytes]  # a CoAP message: its message ID and token

log = logging.getLogger("hil.targets.virtual_time")


class EmulatorClock(Protocol):
    """An emulator's device clock, as the harness drives it."""

    #: set by the governor: called (on the event loop) when a message has left the device
    on_sent: Callable[[], None] | None

    async def device_time(self) -> float:
        """Seconds of device time since the machine started."""

    def set_skipping(self, on: bool) -> bool:
        """On: idle device time passes as fast as the host can run it. Off: device time keeps to the
        host's pace. Returns whether skipping is on now: a clock refuses to start skipping while a
        message from the device is still unaccounted for (and calls ``on_sent`` for it)."""

    def message_time(self, key: MessageKey) -> float | None:
        """The device time at which the CoAP message ``key`` left the device, if the clock saw it."""


class ExchangeSource(Protocol):
    """The gateway's exchanges in flight, per endpoint (:class:`hil.gateway.in_flight.Exchanges`)."""

    def count(self, endpoint: str) -> int: ...

    def add_listener(self, listener: Callable[[str, int], None]) -> Callable[[], None]: ...


class TimeGovernor:
    """Switches one device's clock between skipping and keeping pace, by the rule in the module docs.

    Without exchanges to watch (:meth:`watch`) it never lets the clock skip:
    a device nobody told the governor about runs at the host's pace.
    Everything happens in callbacks on the event loop: an exchange's start
    stops skipping before its request is sent.
    """

    def __init__(self, clock: EmulatorClock, endpoint: str, *, settle: float = SETTLE):
        self.clock = clock
        self.endpoint = endpoint
        self.settle = settle
        self.skipping = False  # what the clock last said
        self.switches = 0
        self.messages = 0  # messages the clock saw leave the device
        self.error: BaseException | None = None
        self._exchanges: ExchangeSource | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._last_sent = float("-inf")  # time.monotonic() of the device's last message
        self._timer: asyncio.TimerHandle | None = None
        clock.on_sent = self.device_sent

    def watch(self, exchanges: ExchangeSource) -> None:
        """Skip whenever ``exchanges`` (the gateway's) allows it."""
        self.unwatch()
        self._exchanges = exchanges
        self._remove_listener = exchanges.add_listener(self._on_exchange)
        self._evaluate()

    def unwatch(self) -> None:
        """Back to the host's pace, for good."""
        if self._remove_listener is not None:
            self._remove_listener()
        self._remove_listener, self._exchanges = None, None
        self._evaluate()

    def close(self) -> None:
        self.unwatch()
        self.clock.on_sent = None
        if self._timer is not None:
            self._timer.cancel()

    def allowed(self) -> bool:
        """The rule, now."""
        if self._exchanges is None or self._exchanges.count(self.endpoint):
            return False
        return time.monotonic() - self._last_sent >= self.settle

    def device_sent(self) -> None:
        """A message left the device (the clock has already stopped skipping)."""
        self._last_sent = time.monotonic()
        self.messages += 1
        self.skipping = False
        self._evaluate()

    def _on_exchange(self, endpoint: str, count: int) -> None:
        if endpoint == self.endpoint:
            self._evaluate()

    def _evaluate(self) -> None:
        try:
            wanted = self.allowed()
            if wanted != self.skipping:
                self.skipping = self.clock.set_skipping(wanted)
                self.switches += 1
            if not self.skipping and self._exchanges is not None and not self._exchanges.count(self.endpoint):
                self._look_again(self.settle - (time.monotonic() - self._last_sent))
        except Exception as e:  # never into the gateway's request that called us: say so where waits look
            self.error = e
            log.warning("%s: the time governor could not switch the clock: %s", self.endpoint, e)

    def _look_again(self, delay: float) -> None:
        """Only the settle time (or a refused switch) stands in the way: look again after it."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(delay, 0.001), self._evaluate)


async def wait_device_time(clock: EmulatorClock, seconds: float, *, timeout: float | None = None, poll: float = 0.02) -> float:
    """Return once ``seconds`` of device time have passed; the device time then.

    ``timeout`` (wall seconds; default: ``seconds`` plus a minute, as device
    time does not run much slower than the host's) ends a wait for a device
    whose time does not move (paused, halted in a debugger) with a
    :class:`TimeoutError` that says how far it got.
    """
    start = now = await clock.device_time()
    limit = seconds + 60.0 if timeout is None else timeout
    deadline = time.monotonic() + limit
    while now - start < seconds:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"device time moved {now - start:.3f} s of {seconds:g} s in {limit:g} s of wall time"
                " (is the device paused or halted in a debugger?)"
            )
        await asyncio.sleep(poll)
        now = await clock.device_time()
    return now


def coap_key(payload: bytes) -> MessageKey | None:
    """The message ID and token of a CoAP message over UDP (RFC 7252 section 3), or None if it is not one."""
    if len(payload) < 4 or payload[0] >> 6 != 1:
        return None
    tkl = payload[0] & 0x0F
    if tkl > 8 or len(payload) < 4 + tkl:
        return None
    return int.from_bytes(payload[2:4], "big"), bytes(payload[4 : 4 + tkl])


def expects_answer(payload: bytes) -> bool:
    """Whether a UDP payload from the device starts an exchange: a confirmable message, or a request
    (answered even when non-confirmable). A non-confirmable notification, an ACK or a Reset does not;
    a payload that is not CoAP counts as starting one (the harness cannot tell)."""
    if coap_key(payload) is None:
        return True
    kind, code = (payload[0] >> 4) & 0x3, payload[1]
    return kind == 0 or (kind == 1 and code >> 5 == 0 and code != 0)


def classify_packet(packet: bytes) -> tuple[MessageKey | None, bool]:
    """An IPv4 packet from the device: its CoAP message (or None), and whether it starts an exchange
    (anything that is not a CoAP message over UDP counts as starting one)."""
    try:
        payload = parse_udp(parse_ipv4(packet)).payload
    except PacketError:
        return None, True
    return coap_key(payload), expects_answer(payload)


class FileTail:
    """The bytes a growing file (an emulator's record of what left the device) gained since the last read."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return b""
        self.offset += len(data)
        return data


class TxLog:
    """The device time at which recent CoAP messages left a device, by message ID and token."""

    def __init__(self, keep: int = 4096):
        self.keep = keep
        self._times: OrderedDict[MessageKey, float] = OrderedDict()

    def record(self, key: MessageKey, device_time: float) -> None:
        self._times[key] = device_time
        self._times.move_to_end(key)
        while len(self._times) > self.keep:
            self._times.popitem(last=False)

    def device_time(self, key: MessageKey) -> float | None:
        return self._times.get(key)

    def __len__(self) -> int:
        return len(self._times)
