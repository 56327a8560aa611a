"""The node's virtual clock.

Everything on a simulated node that waits (service sleeps, registration
updates, sensor waveforms) waits on a :class:`VirtualClock`, never on the wall
clock directly. In real-time mode virtual time follows the event loop's clock,
``scale`` times faster (a scale of 10 turns a service's 30 s period into 3 s
of wall time); in manual mode it stands still until a test calls :meth:`VirtualClock.advance`,
which runs every timer that falls due, in order, so an hour of device time
costs only the work done in it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Callable


class TimerHandle:
    __slots__ = ("when", "callback", "cancelled", "_loop_handle")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._loop_handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._loop_handle is not None:
            self._loop_handle.cancel()


class VirtualClock:
    """Seconds of device time; one clock may be shared by many nodes."""

    def __init__(self, realtime: bool = True, start: float = 0.0, scale: float = 1.0):
        if scale <= 0:
            raise ValueError(f"clock scale must be positive, got {scale}")
        self.realtime = realtime
        self.scale = scale
        self._start = start
        self._now = start  # manual mode only
        self._origin: float | None = None  # loop.time() at virtual `start`, realtime mode
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()

    def _loop_origin(self) -> float:
        if self._origin is None:
            self._origin = asyncio.get_running_loop().time()
        return self._origin

    def now(self) -> float:
        if self.realtime:
            try:
                return self._start + (asyncio.get_running_loop().time() - self._loop_origin()) * self.scale
            except RuntimeError:  # no running loop: time has not started yet
                return self._start
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        if self.realtime:
            loop = asyncio.get_running_loop()
            handle._loop_handle = loop.call_at(self._loop_origin() + (when - self._start) / self.scale, callback)
        else:
            heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(self.now() + max(0.0, delay), callback)

    async def sleep(self, seconds: float) -> None:
        if self.realtime:
            await asyncio.sleep(max(0.0, seconds) / self.scale)
            return
        fut = asyncio.get_running_loop().create_future()
        handle = self.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()

    async def advance(self, seconds: float) -> int:
        """Manual mode: move time forward by ``seconds``, firing due timers in order.

        Between timers the event loop runs until idle, so a coroutine woken by
        one timer can schedule the next before time moves on. Returns the
        number of timers fired.
        """
        if self.realtime:
            raise RuntimeError("advance() needs a clock in manual mode (VirtualClock(realtime=False))")
        target = self._now + seconds
        fired = 0
        await _settle()
        while self._heap and self._heap[0][0] <= target:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, when)
            handle.callback()
            fired += 1
            await _settle()
        self._now = target
        await _settle()
        return fired

    @property
    def pending(self) -> int:
        return sum(1 for _, _, h in self._heap if not h.cancelled)


async def _settle(rounds: int = 8) -> None:
    """Let woken coroutines run (several hops of await chains) before time moves."""
    for _ in range(rounds):
        await asyncio.sleep(0)
