"""The simulator stamps readings with the device time the service wrote them at.

The node is the real simulated node (no server); the notifications are fakes
named as such, carrying the path and value a gateway notification would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from hil.device.clock import VirtualClock
from hil.lwm2m.model import Path
from hil.readings import Reading, ReadingCollector
from hil.targets.base import TargetConfig
from hil.targets.sim import SimTarget

VALUE = Path(3303, 0, 5700)


@dataclass
class FakeNotification:
    path: Path
    value_: Any

    def value(self, path: Any = None) -> Any:
        return self.value_


async def test_sim_readings_carry_the_device_time_of_the_write(tmp_path: FsPath) -> None:
    clock = VirtualClock(realtime=False)
    async with SimTarget(TargetConfig("node1", tmp_path, options={"clock": clock})) as target:
        assert target.has_device_time
        store = target.node.objects
        assert store.exists(VALUE), "the simulated board has its temperature sensor at /3303/0"
        await clock.advance(5.0)
        store.set(VALUE, 23.25)
        await clock.advance(30.0)
        store.set(VALUE, 22.0)
        await clock.advance(0.7)  # the notification arrives later than it was produced
        assert target.device_time_of(FakeNotification(VALUE, 22.0)) == 35.0
        assert target.device_time_of(FakeNotification(VALUE, 23.25)) == 5.0, "a late notification finds its own write"
        assert target.device_time_of(FakeNotification(VALUE, 99.0)) is None, "a value never written has no stamp"
        assert target.device_time_of(FakeNotification(Path(3303, 0, 5601), 1.0)) is None


def test_device_intervals_scale_wall_time_only_without_device_time() -> None:
    collector = ReadingCollector(gateway=None, endpoint="node1", path=VALUE)
    collector.readings = [Reading(1.0, 10.0, VALUE, 100.0), Reading(2.0, 10.3, VALUE, 103.0)]
    assert collector.device_intervals(time_scale=10.0) == [3.0]
    collector.readings = [Reading(1.0, 10.0, VALUE, None), Reading(2.0, 10.3, VALUE, None)]
    assert [round(d, 6) for d in collector.device_intervals(time_scale=10.0)] == [3.0]
