"""The simulator target: an in-process simulated embServe node.

The node's services run their real ARM code on an emulated Cortex-M, and it
speaks LwM2M over real UDP on loopback, so everything above the target is
the same as for an emulated or real board. Its clock runs ``speed`` times
faster than the wall clock (option ``sim_speed``, default 10): a service's
30 s period passes in 3 s, and waits in tests are scaled to match.

With option ``metrics`` the node counts what each service runs
(:mod:`hil.service.metering`): instructions per slice and SDK calls, exactly.
"""

from __future__ import annotations

import asyncio

from ..device.clock import VirtualClock
from ..metrics import DeviceMetrics
from ..service.metering import ServiceMeters
from .base import Target, TargetConfig, TargetError, register_target

DEFAULT_SPEED = 10.0
BOOT_TIMEOUT = 10.0


@register_target
class SimTarget(Target):
    name = "sim"
    metrics_source = "simulator"

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.time_scale = float(config.options.get("sim_speed", DEFAULT_SPEED))
        self.clock: VirtualClock = config.options.get("clock") or VirtualClock(realtime=True, scale=self.time_scale)
        self.node = None
        self._meters: ServiceMeters | None = None  # outlives the node, so metrics can be read after stop()
        self._metered_from = 0.0

    async def start(self) -> None:
        from ..device.node import Node

        board = self.config.board
        sensors = dict(self.config.sensors) if self.config.sensors else None
        kwargs = {"sensors": sensors} if sensors is not None else {}
        self.node = Node(self.endpoint, clock=self.clock, board=board.name if board else "sim",
                         meter_services=self.metrics_enabled, **kwargs)
        self._meters, self._metered_from = self.node.service_meters, self.clock.now()
        # Attach before boot: the banner is part of the console log.
        self.node.console.add_listener(self.console.feed)

        async def write(data: bytes) -> None:
            self.node.console.write_input(data.decode("utf-8", errors="replace"))

        self.console.writer = write
        try:
            await self.node.start()
        except OSError as e:
            raise TargetError(f"{self.endpoint}: simulated node failed to boot: {e}") from e
        await self.console.expect_prompt(BOOT_TIMEOUT)

    async def stop(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await node.aclose()

    async def metrics(self) -> DeviceMetrics:
        if self._meters is None:
            return await super().metrics()
        return DeviceMetrics(self.endpoint, self.metrics_source, self._metered_from, self.clock.now(),
                             services=self._meters.snapshot())

    async def sleep_device(self, seconds: float) -> None:
        if self.clock.realtime:
            await asyncio.sleep(seconds / self.clock.scale)
        else:
            await self.clock.advance(seconds)
