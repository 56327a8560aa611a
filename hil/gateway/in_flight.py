"""How many requests the gateway has in flight with each device, for whoever must not disturb them.

An exchange is in flight from the moment the gateway sends a request to a
device until the device's answer (or the error it amounts to) is back: a
read, a write (every Block1 block of it), an execute, the first answer to an
Observe. An emulated device's virtual time may skip idle time only while its
count is zero (:mod:`hil.targets.virtual_time`): while the gateway waits, the
device must live at the pace of the host, or its own timers would run out
because the host was slower than the device's clock.

Requests a device sends (Register, Update) are answered synchronously by the
registration interface, without an await in between, so no one could see
them counted here; the emulator's side covers them (a message leaving the
device ends skipping there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ExchangeListener = Callable[[str, int], None]


class InFlight:
    """Per endpoint, the gateway's exchanges in flight; listeners hear every change."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._listeners: list[ExchangeListener] = []

    def count(self, endpoint: str) -> int:
        return self._counts.get(endpoint, 0)

    @contextlib.contextmanager
    def track(self, endpoint: str) -> Iterator[None]:
        """Count one exchange with ``endpoint`` for the duration of the block."""
        self._change(endpoint, +1)
        try:
            yield
        finally:
            self._change(endpoint, -1)

    def add_listener(self, listener: ExchangeListener) -> Callable[[], None]:
        """Call ``listener(endpoint, count)`` on every change; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _change(self, endpoint: str, delta: int) -> None:
        count = self._counts.get(endpoint, 0) + delta
        if count:
            self._counts[endpoint] = count
        else:
            self._counts.pop(endpoint, None)
        for listener in list(self._listeners):
            listener(endpoint, count)
