"""ReadingCollector with device times: intervals in device seconds when every reading has one.

A fake gateway stands in for the real one (its observation is fed by hand);
the device-time source is a dictionary that learns stamps late, as an
emulator's record does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from hil.lwm2m.model import Path
from hil.readings import ReadingCollector

PATH = Path(3303, 0, 5700)


@dataclass
class FakeNotification:
    value_: float
    timestamp: float
    message_id: int
    token: bytes = b"\x01"

    def value(self, path: Any = None) -> float:
        return self.value_


@dataclass
class FakeObservation:
    latest: Any = None
    listeners: list[Callable[[Any], None]] = field(default_factory=list)

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def cancel(self) -> None:
        pass

    def notify(self, notification: FakeNotification) -> None:
        for listener in self.listeners:
            listener(notification)


class FakeGateway:
    def __init__(self) -> None:
        self.observation = FakeObservation()

    async def observe(self, endpoint: str, path: Path, timeout: float) -> FakeObservation:
        return self.observation


async def stamped_collector() -> tuple[ReadingCollector, FakeGateway, dict[int, float]]:
    """A started collector whose device times come from a dictionary (by message ID), filled in later."""
    gateway = FakeGateway()
    stamps: dict[int, float] = {}
    collector = ReadingCollector(gateway, "node1", PATH, device_time=lambda n: stamps.get(n.message_id))
    await collector.start()
    return collector, gateway, stamps


async def test_intervals_are_device_seconds_once_every_reading_is_stamped_with_fake_gateway() -> None:
    collector, gateway, stamps = await stamped_collector()
    # Wall-clock arrivals 50 ms apart (skipped idle time); the device sent them 2 s apart.
    for i in range(3):
        stamps[i] = 10.0 + 2.0 * i
        gateway.observation.notify(FakeNotification(21.0, 1000.0 + 0.05 * i, i))
    assert collector.intervals() == pytest.approx([2.0, 2.0])
    assert "value@device-time offset" in collector.summary() and "21.00@+4.00s" in collector.summary()


async def test_stamps_that_come_late_are_looked_up_again_with_fake_gateway() -> None:
    collector, gateway, stamps = await stamped_collector()
    gateway.observation.notify(FakeNotification(21.0, 1000.0, 1))
    gateway.observation.notify(FakeNotification(22.0, 1000.1, 2))
    fresh = list(collector.readings)
    assert [r.device_time for r in fresh] == [None, None]
    assert collector.intervals(fresh) == pytest.approx([0.1]), "wall clock until every reading has device time"
    stamps.update({1: 5.0, 2: 7.5})
    assert collector.intervals(fresh) == pytest.approx([2.5]), "the readings a test holds get their stamps too"
    assert [r.device_time for r in collector.readings] == [5.0, 7.5]


async def test_a_wait_gives_missing_stamps_a_moment_with_fake_gateway() -> None:
    import asyncio

    collector, gateway, stamps = await stamped_collector()
    gateway.observation.notify(FakeNotification(21.0, 1000.0, 1))
    asyncio.get_running_loop().call_later(0.05, stamps.update, {1: 3.0})
    got = await collector.wait(1, timeout=1.0)
    assert got[0].device_time == 3.0


async def test_without_a_device_time_source_intervals_stay_wall_clock_with_fake_gateway() -> None:
    gateway = FakeGateway()
    collector = ReadingCollector(gateway, "node1", PATH)
    await collector.start()
    gateway.observation.notify(FakeNotification(21.0, 1000.0, 1))
    gateway.observation.notify(FakeNotification(21.0, 1003.0, 2))
    assert collector.intervals() == pytest.approx([3.0])
    assert collector.readings[0].device_time is None
