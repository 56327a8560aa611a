"""The simulator target: an in-process simulated embServe node.

The node's services run their real ARM code on an emulated Cortex-M, and it
speaks LwM2M over real UDP on loopback, so everything above the target is
the same as for an emulated or real board. Its clock runs ``speed`` times
faster than the wall clock (option ``sim_speed``, default 10): a service's
30 s period passes in 3 s, and waits in tests are scaled to match.
"""

from __future__ import annotations

import asyncio

from ..device.clock import VirtualClock
from .base import GDB_HOST, Target, TargetConfig, TargetError, register_target

DEFAULT_SPEED = 10.0
BOOT_TIMEOUT = 10.0


@register_target
class SimTarget(Target):
    name = "sim"

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.time_scale = float(config.options.get("sim_speed", DEFAULT_SPEED))
        self.clock: VirtualClock = config.options.get("clock") or VirtualClock(realtime=True, scale=self.time_scale)
        self.node = None
        self.gdb_server = None

    async def start(self) -> None:
        from ..device.node import Node

        board = self.config.board
        sensors = dict(self.config.sensors) if self.config.sensors else None
        kwargs = {"sensors": sensors} if sensors is not None else {}
        self.node = Node(self.endpoint, clock=self.clock, board=board.name if board else "sim", **kwargs)
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
        return self.clock.now()

    async def stop(self) -> None:
        server, self.gdb_server = self.gdb_server, None
        if server is not None:
            await server.close()
        node, self.node = self.node, None
        if node is not None:
            await node.aclose()

    async def sleep_device(self, seconds: float) -> None:
        if self.clock.realtime:
            await asyncio.sleep(seconds / self.clock.scale)
        else:
            await self.clock.advance(seconds)
