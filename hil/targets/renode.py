"""The Renode target: a board from the catalog on Renode, driven through its monitor.

Bring-up, all through the monitor (see :mod:`hil.infra.renode`)::

    mach create "<endpoint>"
    machine LoadPlatformDescription @<board's .repl>
    sysbus LoadELF @<firmware>
    emulation CreateServerSocketTerminal <free port> "term" false    (raw bytes, no telnet)
    connector Connect <console UART> term
    [emulation CreateSwitch "switch"; connector Connect <ethernet> switch
     emulation CreateTap "<tap>" "tap"; connector Connect host.tap switch]
    start

The console socket is connected before ``start``, so the boot output is in
the console log. Device time is Renode's virtual time: :meth:`sleep_device`
pauses the machine and runs it for exactly that long (``emulation RunFor``).

Options (``TargetConfig.options``): ``renode_tap`` (a host TAP device for the
board's Ethernet; creating one needs CAP_NET_ADMIN), ``boot_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

from ..infra.ports import LOOPBACK, free_port
from ..infra.process import InfraError, MissingBinaryError
from ..infra.renode import RenodeError, RenodeMonitor, RenodeProcess, renode_binary
from .base import Target, TargetConfig, TargetError, TargetUnavailable, register_target

BOOT_TIMEOUT = 30.0  # Renode needs ~2.5 s from launch to the first UART line; platforms with SVDs more
COMMAND_TIMEOUT = 60.0  # LoadPlatformDescription retries SVD downloads when offline


def run_for_argument(seconds: float) -> str:
    """A TimeInterval as the monitor takes it: "HH:MM:SS.ffffff"."""
    micros = round(seconds * 1_000_000)
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    secs, micros = divmod(rest, 1_000_000)
    return f'"{hours:02d}:{minutes:02d}:{secs:02d}.{micros:06d}"'


def machine_name(endpoint: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", endpoint) or "dut"


def bring_up_commands(
    machine: str, platform: str, firmware: Path, console: str, console_port: int,
    *, ethernet: str | None = None, tap: str | None = None,
) -> tuple[list[str], list[str]]:
    """Monitor commands before the console is connected, and after it (ending with ``start``)."""
    before = [
        f'mach create "{machine}"',
        f"machine LoadPlatformDescription {platform}",
        f"sysbus LoadELF @{firmware}",
        f'emulation CreateServerSocketTerminal {console_port} "term" false',
        f"connector Connect {console} term",
    ]
    after: list[str] = []
    if ethernet:
        after += ['emulation CreateSwitch "switch"', f"connector Connect {ethernet} switch"]
        if tap:
            after += [f'emulation CreateTap "{tap}" "tap"', "connector Connect host.tap switch"]
    after.append("start")
    return before, after


@register_target
class RenodeTarget(Target):
    name = "renode"

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.process: RenodeProcess | None = None
        self.monitor: RenodeMonitor | None = None
        self._console_writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one monitor conversation at a time

    def _platform(self) -> str:
        board = self.config.board
        if board is None or not board.renode_platform:
            name = board.name if board else "(none)"
            raise TargetError(f"{self.endpoint}: board {name} has no renode_platform; Renode cannot run it")
        if board.renode_platform.startswith("@"):
            return board.renode_platform  # inside Renode's own tree, e.g. @platforms/boards/...
        path = board.resolve_path(board.renode_platform)
        if not path.is_file():
            raise TargetError(f"{self.endpoint}: board {board.name}: renode_platform {path} does not exist")
        return f"@{path}"

    def _firmware(self) -> Path:
        board = self.config.board
        firmware = self.config.firmware or (board.resolve_path(board.firmware) if board and board.firmware else None)
        if firmware is None:
            raise TargetError(f"{self.endpoint}: no firmware: pass --firmware (board {board.name if board else '-'} names none)")
        firmware = Path(firmware).resolve()
        if not firmware.is_file():
            raise TargetError(f"{self.endpoint}: firmware {firmware} does not exist")
        return firmware

    async def start(self) -> None:
        try:
            renode_binary()
        except MissingBinaryError as e:
            raise TargetUnavailable(f"{self.endpoint}: {e}") from None
        platform, firmware = self._platform(), self._firmware()
        board = self.config.board
        assert board is not None  # _platform() needs one
        self.process = RenodeProcess(log_dir=self.config.log_dir, name=f"{self.endpoint}.renode")
        try:
            await self.process.__aenter__()
        except InfraError as e:
            raise TargetError(f"{self.endpoint}: Renode did not start: {e}") from e
        transcript = self.config.log_dir / f"{self.endpoint}.renode-monitor.log"
        try:
            self.monitor = await RenodeMonitor.connect(self.process.host, self.process.port, transcript=transcript)
            console_port = free_port()
            before, after = bring_up_commands(
                machine_name(self.endpoint), platform, firmware, board.renode_console, console_port,
                ethernet=board.renode_ethernet, tap=self.config.options.get("renode_tap"),
            )
            for command in before:
                await self.monitor.execute(command, COMMAND_TIMEOUT)
            reader, self._console_writer = await asyncio.open_connection(LOOPBACK, console_port)
            self._pump = asyncio.create_task(self._pump_console(reader))
            self.console.writer = self._write
            for command in after:
                await self.monitor.execute(command, COMMAND_TIMEOUT)
        except (RenodeError, OSError) as e:
            raise TargetError(f"{self.endpoint}: {e}\n(Renode log: {self.process.log_path}; monitor transcript: {transcript})") from e
        timeout = float(self.config.options.get("boot_timeout", max(BOOT_TIMEOUT, board.boot_timeout)))
        await self.console.expect_prompt(timeout, self.shell.prompt)

    async def _pump_console(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                self.console.feed(data)

    async def _write(self, data: bytes) -> None:
        if self._console_writer is None:
            raise TargetError(f"{self.endpoint}: Renode console is not connected")
        self._console_writer.write(data)
        await self._console_writer.drain()

    async def command(self, text: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run one monitor command on this target's Renode."""
        if self.monitor is None:
            raise TargetError(f"{self.endpoint}: Renode is not running")
        async with self._lock:
            try:
                return await self.monitor.execute(text, timeout)
            except RenodeError as e:
                raise TargetError(f"{self.endpoint}: {e}") from e

    async def sleep_device(self, seconds: float) -> None:
        """Exactly ``seconds`` of virtual time: pause, run for that long, carry on."""
        await self.command("pause")
        try:
            await self.command(f"emulation RunFor {run_for_argument(seconds)}", timeout=COMMAND_TIMEOUT + 20 * seconds)
        finally:
            await self.command("start")

    async def stop(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):
                await monitor.quit(timeout=5.0)
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        writer, self._console_writer = self._console_writer, None
        if writer is not None:
            writer.close()
        self.console.writer = None
        process, self.process = self.process, None
        if process is not None:
            await asyncio.to_thread(process.stop)

    async def bootstrap(self, server_uri: str, timeout: float = 10.0) -> None:
        board = self.config.board
        if board is not None and not board.renode_ethernet:
            raise TargetError(
                f"{self.endpoint}: board {board.name} has no Ethernet model on Renode (no renode_ethernet in its"
                f" board file; Renode has no LAN9118), so the node cannot reach the gateway at {server_uri}"
            )
        if not self.config.options.get("renode_tap"):
            raise TargetError(
                f"{self.endpoint}: the board's Ethernet is only on a Renode switch; to reach the gateway at"
                f" {server_uri} give the target a host TAP device (option renode_tap, e.g. 'renode-tap0')"
            )
        await super().bootstrap(server_uri, timeout)
