"""The simulator target: an in-process simulated embServe node.

The node's services run their real ARM code on an emulated Cortex-M, and it
speaks LwM2M over real UDP on loopback, so everything above the target is
the same as for an emulated or real board. Its clock runs ``speed`` times
faster than the wall clock (option ``sim_speed``, default 10): a service's
30 s period passes in 3 s, and waits in tests are scaled to match.

Readings carry the device time they were produced at: the node's clock when
the service wrote the observed resource (:meth:`SimTarget.device_time_of`).

With option ``metrics`` the node counts what each service runs
(:mod:`hil.service.metering`): instructions per slice and SDK calls, exactly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..device.clock import VirtualClock
from ..lwm2m import Path as LwPath
from ..lwm2m.model import LwM2MError
from ..metrics import DeviceMetrics
from ..service.metering import ServiceMeters
from .base import GDB_HOST, Target, TargetConfig, TargetError, register_target

DEFAULT_SPEED = 10.0
#: writes remembered per resource, to find the one a late notification carries
WRITES_KEPT = 16
BOOT_TIMEOUT = 10.0


@register_target
class SimTarget(Target):
    name = "sim"
    metrics_source = "simulator"

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.time_scale = float(config.options.get("sim_speed", DEFAULT_SPEED))
        self.node_clock: VirtualClock = config.options.get("clock") or VirtualClock(realtime=True, scale=self.time_scale)
        self.node = None
        self.gdb_server = None
        #: resource path -> its latest (device time, value) writes
        self._writes: dict[LwPath, deque[tuple[float, Any]]] = {}
        self._meters: ServiceMeters | None = None  # outlives the node, so metrics can be read after stop()
        self._metered_from = 0.0

    async def start(self) -> None:
        from ..device.node import Node

        board = self.config.board
        sensors = dict(self.config.sensors) if self.config.sensors else None
        kwargs = {"sensors": sensors} if sensors is not None else {}
        self.node = Node(self.endpoint, clock=self.node_clock, board=board.name if board else "sim",
                         meter_services=self.metrics_enabled, **kwargs)
        self._meters, self._metered_from = self.node.service_meters, self.node_clock.now()
        # Each boot builds a fresh object store: listen to each one.
        self.node.add_boot_hook(lambda node: node.objects.add_listener(self._on_store_change))
        if self.config.gdb_port is not None:
            await self._serve_gdb(self.config.gdb_port)
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
        if self.gdb_server is not None:
            try:
                await self.gdb_server.wait_for_debugger(BOOT_TIMEOUT * self.boot_wait_scale)
            except asyncio.TimeoutError:
                raise TargetError(f"{self.endpoint}: no debugger attached to 127.0.0.1:{self.gdb_server.port} and"
                                  f" continued within {BOOT_TIMEOUT * self.boot_wait_scale:g} s") from None

    async def _serve_gdb(self, port: int) -> None:
        """The node's services run on a CPU of its own, served to GDB; the services' ELFs come as libraries."""
        from ..service.cpu import Machine
        from ..service.gdbserver import GdbServer

        machine = Machine()
        self.node.service_machine = machine
        self.gdb_server = await GdbServer(machine, GDB_HOST, port).start()
        self._gdb_ready(self.gdb_server.port, None)  # no ELF up front: GDB gets each service's as a library

    def device_time(self) -> float | None:
        return self.node_clock.now()

    @property
    def has_device_time(self) -> bool:
        return True

    def _on_store_change(self, change: Any) -> None:
        path = change.path
        if change.kind != "value" or path.res is None or self.node is None:
            return
        try:
            value = self.node.objects.get(path)
        except LwM2MError:  # a multiple resource read as a whole, or gone again: nothing to stamp with
            return
        self._writes.setdefault(path, deque(maxlen=WRITES_KEPT)).append((self.node_clock.now(), value))

    def device_time_of(self, notification: Any) -> float | None:
        """When the service wrote the value ``notification`` carries (the latest such write), in device time."""
        path = getattr(notification, "path", None)
        writes = self._writes.get(path) if path is not None else None
        if not writes:
            return None
        try:
            value = notification.value(path)
        except KeyError:  # the notification does not carry the path (a 4.04 ending the observation)
            return None
        for when, written in reversed(writes):
            if written == value or (isinstance(value, float) and isinstance(written, (int, float))
                                    and abs(written - value) <= 1e-6 * max(1.0, abs(value))):
                return when
        return None

    async def stop(self) -> None:
        server, self.gdb_server = self.gdb_server, None
        if server is not None:
            await server.close()
        node, self.node = self.node, None
        if node is not None:
            await node.aclose()

    async def metrics(self) -> DeviceMetrics:
        if self._meters is None:
            return await super().metrics()
        return DeviceMetrics(self.endpoint, self.metrics_source, self._metered_from, self.node_clock.now(),
                             services=self._meters.snapshot())

    async def sleep_device(self, seconds: float) -> None:
        if self.node_clock.realtime:
            await asyncio.sleep(seconds / self.node_clock.scale)
        else:
            await self.node_clock.advance(seconds)
