"""What a long wait is waiting for, told to the person watching.

Waits that may take long (a console line, a node's readings, a target's boot,
a lab's queue) run inside ``with waiting("node1 boot (qemu)", timeout=30):``.
Nothing is said for a wait that ends within :data:`QUIET_FOR` seconds; past
that, one line names it and how long it has run, then one line every
:data:`EVERY` seconds while it lasts. Waits running at the same time share one
line, and a wait inside another (the boot's wait for the shell prompt) stays
quiet: the outer one says what the time is for.

Where the lines go is the sink's business: a logger by default (the library
says nothing on a terminal of its own), the pytest plugin's terminal line when
running under pytest (:func:`set_sink`). Ticks come from the running asyncio
loop, so a wait outside a loop is never announced.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

QUIET_FOR = 2.0  # seconds a wait may take before it is announced
EVERY = 5.0  # seconds between lines while waits go on
TICK = 0.5  # how often the running waits are looked at
SHOWN = 3  # waits named in one line; the rest are counted

Sink = Callable[[str], None]

log = logging.getLogger("hil.progress")


def _log_sink(line: str) -> None:
    log.info("%s", line)


_sink: Sink = _log_sink
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("hil_progress_depth", default=0)


def set_sink(sink: Sink | None) -> Sink:
    """Send progress lines to ``sink`` (None: back to the logger); returns the previous sink."""
    global _sink
    previous, _sink = _sink, sink or _log_sink
    return previous


@dataclass(eq=False)
class Wait:
    what: str
    timeout: float | None
    started: float = field(default_factory=time.monotonic)
    announced: bool = False

    def describe(self, now: float) -> str:
        of = f" of {self.timeout:.0f} s" if self.timeout is not None else ""
        return f"{self.what} ({now - self.started:.0f} s{of})"


class _Ticker:
    """The waits running on one event loop, looked at every :data:`TICK` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.waits: list[Wait] = []
        self.last_line = float("-inf")
        self.handle: asyncio.TimerHandle | None = None

    def add(self, wait: Wait) -> None:
        self.waits.append(wait)
        if self.handle is None:
            self.handle = self.loop.call_later(TICK, self.tick)

    def remove(self, wait: Wait) -> None:
        self.waits.remove(wait)
        if not self.waits and self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def tick(self) -> None:
        now = time.monotonic()
        due = [w for w in self.waits if now - w.started >= QUIET_FOR]
        if due and (any(not w.announced for w in due) or now - self.last_line >= EVERY):
            self.last_line = now
            for w in due:
                w.announced = True
            _say(line_for(due, now))
        self.handle = self.loop.call_later(TICK, self.tick) if self.waits else None


_tickers: dict[asyncio.AbstractEventLoop, _Ticker] = {}


def line_for(waits: list[Wait], now: float) -> str:
    """The one line for the waits running past :data:`QUIET_FOR`, oldest first."""
    waits = sorted(waits, key=lambda w: w.started)
    if len(waits) == 1:
        return f"embserve-hil: waiting for {waits[0].describe(now)}"
    named = "; ".join(w.describe(now) for w in waits[:SHOWN])
    more = f"; and {len(waits) - SHOWN} more" if len(waits) > SHOWN else ""
    return f"embserve-hil: waiting for {len(waits)} things: {named}{more}"


def _say(line: str) -> None:
    try:
        _sink(line)
    except Exception:  # a broken sink must not break the wait it reports on
        log.exception("progress sink %r failed", _sink)


@contextmanager
def waiting(what: str, timeout: float | None = None) -> Iterator[Wait]:
    """Announce this wait if it outlasts :data:`QUIET_FOR` (see the module docs)."""
    wait = Wait(what, timeout)
    outer = _depth.get() == 0
    token = _depth.set(_depth.get() + 1)
    ticker = None
    if outer:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            ticker = _tickers.get(loop)
            if ticker is None:
                ticker = _tickers[loop] = _Ticker(loop)
            ticker.add(wait)
    try:
        yield wait
    finally:
        _depth.reset(token)
        if ticker is not None:
            ticker.remove(wait)
            if not ticker.waits:
                _tickers.pop(ticker.loop, None)
