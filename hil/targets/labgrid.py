"""The labgrid target: a board on a place of a labgrid lab, driven through the serial target.

The place comes from a :class:`hil.targets.labgrid_place.PlaceLease`: the
pytest plugin acquires one per test run (``--lg-place``, ``--lg-env``) and
hands it over in ``TargetConfig.options["labgrid_place"]``; used as a
library, the target acquires its own from ``options`` ``lg_place`` /
``lg_env`` / ``lg_coordinator`` / ``lg_acquire_timeout`` and releases it
when it stops. Bring-up:

1. the place's console resource (``NetworkSerialPort``, or a local
   ``USBSerialPort``) becomes the serial target's port:
   ``rfc2217://host:port`` (through labgrid's proxy for isolated exporters);
2. with ``--firmware`` and a board file naming a labgrid flasher, the board
   is flashed first, through the place: ``labgrid_flash`` names a labgrid
   driver that loads firmware (e.g. ``OpenOCDDriver``, bound to the place's
   ``USBDebugger``; ``labgrid_flash_options`` are its attributes), or
   ``"command"`` for ``labgrid_flash_command``, run on this machine with
   ``{firmware}``, ``{board}``, ``{place}``, ``{host}`` (the exporter's host)
   and ``{port}`` (the console URL) filled in. Without them the board file's
   ``flash`` command applies, as on the serial target;
3. the serial target opens the console and resets the board: a power cycle
   through labgrid's power driver when the place has a power resource
   (``NetworkPowerPort``, ``ExternalPowerPort``... or the environment file's
   ``PowerProtocol`` driver), else the board file's reset;
4. while the board is up the place is watched: when its exporter goes away or
   someone else takes the place, the console fails with one line naming the
   place and what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

from .base import TargetConfig, register_target
from .labgrid_place import LeaseSpec, PlaceError, PlaceLease, require_labgrid
from .serial import SerialTarget

WATCH_INTERVAL = 0.5
#: the console line a lost place is reported with; any expect fails on it
LOST_LINE = re.compile(r"^\[embserve-hil: labgrid place ")


@register_target
class LabgridTarget(SerialTarget):
    """A board on a labgrid place; see the module docs."""

    name = "labgrid"

    @classmethod
    def check_tools(cls) -> None:
        require_labgrid()

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.lease: PlaceLease | None = config.options.get("labgrid_place")
        self._own_lease = self.lease is None
        self.power: Any = None  # labgrid's power driver for the place, when it has a power resource
        self._flashed = False
        self._watch: asyncio.Task[None] | None = None
        self.console.fail_on(LOST_LINE)

    @property
    def place(self) -> str:
        return self.lease.place if self.lease and self.lease.place else "?"

    async def start(self) -> None:
        if self.lease is None:
            options = self.config.options
            spec = LeaseSpec(place=options.get("lg_place"), env_file=options.get("lg_env"),
                             coordinator=options.get("lg_coordinator"),
                             acquire_timeout=float(options.get("lg_acquire_timeout", 300.0)), log_dir=self.config.log_dir)
            self.lease = PlaceLease(spec)
            await asyncio.to_thread(self.lease.acquire)
        lease = self.lease
        lost = lease.lost()
        if lost:
            raise PlaceError(lost)
        self.url = await asyncio.to_thread(lease.console_url)
        self.power = await asyncio.to_thread(lease.power_driver)
        await self._flash_through_place()
        self._watch = asyncio.get_running_loop().create_task(self._watch_place(), name=f"labgrid place {self.place}")
        await super().start()

    async def _flash_through_place(self) -> None:
        board = self.config.board
        firmware = self.config.firmware or self.config.options.get("firmware")
        if board is None or not board.labgrid_flash or not firmware:
            return
        firmware = Path(firmware).resolve()
        if not firmware.is_file():
            raise PlaceError(f"labgrid place {self.place}: firmware {firmware} does not exist; nothing to flash")
        lease = self.lease
        assert lease is not None
        if board.labgrid_flash == "command":
            assert board.labgrid_flash_command is not None
            await self._run_command("flash", board.labgrid_flash_command, self.settings["flash_timeout"],
                                    firmware=firmware, place=self.place, host=lease.exporter_host)
        else:
            driver = await asyncio.to_thread(lease.flash_driver, board.labgrid_flash, dict(board.labgrid_flash_options))
            try:
                await asyncio.to_thread(driver.load, str(firmware))
            except Exception as e:
                raise PlaceError(f"labgrid place {self.place}: flashing {firmware.name} with {board.labgrid_flash}"
                                 f" failed: {e}") from None
        self._flashed = True

    async def _flash(self) -> bool:
        board = self.config.board
        if board is not None and board.labgrid_flash:
            return False  # done through the place before the console was opened; the reset that follows shows the boot
        return await super()._flash()

    async def _reset(self) -> str | None:
        if self.power is None:
            return await super()._reset()
        self.boot.restart()
        try:
            await asyncio.to_thread(self.power.cycle)
        except Exception as e:
            raise PlaceError(f"labgrid place {self.place}: power cycle through {type(self.power).__name__}"
                             f" failed: {e}") from None
        return f"a power cycle through place {self.place}'s {type(self.power).__name__}"

    async def _watch_place(self) -> None:
        assert self.lease is not None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            lost = self.lease.lost()
            if lost:
                self._report_lost(lost)
                return

    def _report_lost(self, reason: str) -> None:
        self._closed = f"{reason} ({self._closed})" if self._closed and reason not in self._closed else reason
        self.console.feed(f"\n[embserve-hil: {self._closed}]\n")

    def _on_closed(self, reason: str) -> None:
        # The console dropped: say which place, and why when the coordinator already knows.
        lost = self.lease.lost() if self.lease else None
        self._report_lost(f"labgrid place {self.place}: {reason}" + (f"; {lost.split(': ', 1)[-1]}" if lost else ""))

    async def stop(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        try:
            await super().stop()
        finally:
            if self._own_lease and self.lease is not None:
                lease, self.lease = self.lease, None
                await asyncio.to_thread(lease.release)

    def describe(self) -> str:
        board = self.config.board.name if self.config.board else "-"
        power = f", power through {type(self.power).__name__}" if self.power is not None else ""
        return f"labgrid target, board {board} on place {self.place} ({self.url}){power}, endpoint {self.endpoint}"
