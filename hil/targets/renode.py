"""The Renode target: a board from the catalog on Renode, driven through its monitor.

Bring-up, all through the monitor (see :mod:`hil.infra.renode`)::

    mach create "<endpoint>"
    machine LoadPlatformDescription @<board's .repl>
    sysbus LoadELF @<firmware>
    emulation CreateServerSocketTerminal <free port> "term" false    (raw bytes, no telnet)
    connector Connect <console UART> term
    [net "slip": emulation CreateServerSocketTerminal <free port> "slip" false
                 connector Connect <board's renode_slip_uart> slip]
    [net "eth":  emulation CreateSwitch "switch"; connector Connect <ethernet> switch
                 emulation CreateTap "<tap>" "tap"; connector Connect host.tap switch]
    start

The console socket (and the SLIP socket) is connected before ``start``, so
the boot output is in the console log. Device time is Renode's virtual time:
:meth:`sleep_device` pauses the machine and runs it for exactly that long
(``emulation RunFor``), and a boot that times out says how much virtual time
the machine had run.

How the node reaches the gateway (``options["net"]``): ``"eth"`` for boards
with an Ethernet model (``renode_ethernet``; the default there), through a
Renode switch and a host TAP device (option ``renode_tap``); ``"slip"`` for
boards with a SLIP UART (``renode_slip_uart``; the default for boards without
Ethernet, such as ``mps2_an385``, whose LAN9118 Renode does not model). With
SLIP the harness runs :class:`hil.net.SlipBridge` over the UART's socket
terminal, the target runs ``net iface slip`` after each boot, and the node is
told the gateway is at 192.0.2.1 (or ``gateway_host``); see
:mod:`hil.targets.slip`.

Execution metrics (option ``metrics``): once the node has booted, the
target turns Renode's profiler on (``machine EnableProfiler``, machine
paused meanwhile) into ``<endpoint>.renode-profile.bin`` in the log
directory, and :meth:`metrics` parses what the file gained since the last
call (:mod:`hil.metrics.renode_profile`: instructions per CPU, memory and
peripheral accesses, exceptions, over virtual time). Renode has no command
that turns the profiler off: :meth:`disable_profiler` points it at
``/dev/null``, which closes the file and flushes its last entries; stopping
the target does that before Renode quits, so the metrics read after
:meth:`stop` are complete. While it runs, Renode's file buffer keeps the
last few kB of entries back.

Options (``TargetConfig.options``): ``net``, ``renode_tap``, ``boot_timeout``, ``metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

from ..boards import Board
from ..console import ConsoleTimeout
from ..infra.ports import LOOPBACK, free_port
from ..infra.process import InfraError, MissingBinaryError
from ..infra.renode import RenodeError, RenodeMonitor, RenodeProcess, renode_binary
from ..metrics import DeviceMetrics, ProfileParser, ProfileReader
from ..net import open_tcp_link
from .base import Target, TargetConfig, TargetError, TargetUnavailable, register_target
from .slip import SlipUplink

BOOT_TIMEOUT = 30.0  # Renode needs ~2.5 s from launch to the first UART line; platforms with SVDs more
COMMAND_TIMEOUT = 60.0  # LoadPlatformDescription retries SVD downloads when offline
NET_MODES = ("eth", "slip")


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
    *, ethernet: str | None = None, tap: str | None = None, slip_uart: str | None = None, slip_port: int | None = None,
) -> tuple[list[str], list[str]]:
    """Monitor commands before the harness connects its sockets, and after (ending with ``start``)."""
    before = [
        f'mach create "{machine}"',
        f"machine LoadPlatformDescription {platform}",
        f"sysbus LoadELF @{firmware}",
        f'emulation CreateServerSocketTerminal {console_port} "term" false',
        f"connector Connect {console} term",
    ]
    if slip_uart:
        if slip_port is None:
            raise ValueError("a SLIP UART needs the port of its socket terminal")
        before += [
            f'emulation CreateServerSocketTerminal {slip_port} "slip" false',
            f"connector Connect {slip_uart} slip",
        ]
    after: list[str] = []
    if ethernet:
        after += ['emulation CreateSwitch "switch"', f"connector Connect {ethernet} switch"]
        if tap:
            after += [f'emulation CreateTap "{tap}" "tap"', "connector Connect host.tap switch"]
    after.append("start")
    return before, after


def sysbus_name(peripheral: str) -> str:
    """A board file's peripheral name as the monitor takes it (``uart1`` -> ``sysbus.uart1``)."""
    return peripheral if "." in peripheral else f"sysbus.{peripheral}"


def default_net(board: Board | None) -> str | None:
    """How a board on Renode reaches the gateway when nobody says: Ethernet if modelled, else SLIP if it has the UART."""
    if board is None:
        return None
    if board.renode_ethernet:
        return "eth"
    if board.renode_slip_uart:
        return "slip"
    return None


@register_target
class RenodeTarget(Target):
    name = "renode"
    loads_firmware = True
    metrics_source = "Renode profiler"

    def __init__(self, config: TargetConfig):
        net: str | None = config.options.get("net") or default_net(config.board)
        if net is not None and net not in NET_MODES:
            raise TargetError(f"net={net!r}: the Renode target supports {' or '.join(NET_MODES)}")
        super().__init__(config)
        self.net = net
        self.process: RenodeProcess | None = None
        self.monitor: RenodeMonitor | None = None
        self.uplink = SlipUplink(self.endpoint, config.log_dir, config.gateway_host) if self.net == "slip" else None
        self._console_writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._bootstrap: list[str] = []  # repeated after a reboot
        self._lock = asyncio.Lock()  # one monitor conversation at a time
        self._profile: ProfileReader | None = None
        self._profiling = False

    def _platform(self) -> str:
        board = self.config.board
        if board is None or not board.renode_platform:
            name = board.name if board else "(none)"
            raise TargetError(f"{self.endpoint}: board {name} has no renode_platform; Renode cannot run it")
        if board.renode_platform.startswith("@"):
            return board.renode_platform  # inside Renode's own tree, e.g. @platforms/boards/...
        return f"@{board.existing_file('renode_platform')}"

    async def _firmware(self) -> Path:
        firmware = await self.resolve_firmware()
        if firmware is None:
            board = self.config.board
            raise TargetError(f"{self.endpoint}: no firmware: pass --firmware (board {board.name if board else '-'} names none)")
        return firmware

    def _slip_uart(self) -> str | None:
        if self.net != "slip":
            return None
        board = self.config.board
        if board is None or not board.renode_slip_uart:
            raise TargetError(
                f"{self.endpoint}: net 'slip' needs a UART for the SLIP line, and board"
                f" {board.name if board else '(none)'} names none (board file field renode_slip_uart, e.g. \"uart1\")"
            )
        return sysbus_name(board.renode_slip_uart)

    @classmethod
    def check_tools(cls) -> None:
        try:
            renode_binary()
        except MissingBinaryError as e:
            raise TargetUnavailable(str(e)) from None  # not a Debian package: the HIL suite skips

    async def start(self) -> None:
        try:
            self.check_tools()
        except TargetUnavailable as e:
            raise TargetUnavailable(f"{self.endpoint}: {e}") from None
        platform, slip_uart = self._platform(), self._slip_uart()
        firmware = await self._firmware()
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
            slip_port = free_port() if slip_uart else None
            before, after = bring_up_commands(
                machine_name(self.endpoint), platform, firmware, board.renode_console, console_port,
                ethernet=board.renode_ethernet if self.net == "eth" else None, tap=self.config.options.get("renode_tap"),
                slip_uart=slip_uart, slip_port=slip_port,
            )
            for command in before:
                await self.monitor.execute(command, COMMAND_TIMEOUT)
            reader, self._console_writer = await asyncio.open_connection(LOOPBACK, console_port)
            self._pump = asyncio.create_task(self._pump_console(reader))
            self.console.writer = self._write
            if self.uplink is not None and slip_port is not None:
                link = await open_tcp_link(LOOPBACK, slip_port)
                link.name = f"{self.endpoint} {slip_uart} (Renode socket terminal {LOOPBACK}:{slip_port})"
                self.uplink.attach(link)
            for command in after:
                await self.monitor.execute(command, COMMAND_TIMEOUT)
        except (RenodeError, OSError) as e:
            raise TargetError(f"{self.endpoint}: {e}\n(Renode log: {self.process.log_path}; monitor transcript: {transcript})") from e
        timeout = float(self.config.options.get("boot_timeout", max(BOOT_TIMEOUT, board.boot_timeout)))
        try:
            await self.console.expect_prompt(timeout, self.shell.prompt)
        except ConsoleTimeout as e:
            # Wall-clock time says little about a slow emulation: say how far the machine got.
            raise ConsoleTimeout(f"{e}\nRenode's virtual time then: {await self._virtual_time()}") from e
        await self._after_boot()
        if self.metrics_enabled:
            await self.enable_profiler()

    async def _after_boot(self) -> None:
        if self.uplink is not None:
            await self.uplink.bring_up_interface(self.shell)

    async def _virtual_time(self) -> str:
        try:
            return await self.command("machine ElapsedVirtualTime", timeout=5.0) or "(no answer)"
        except TargetError as e:
            return f"(unknown: {e})"

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

    # -- execution metrics ------------------------------------------------------------

    async def _paused(self, command: str) -> None:
        """``command`` with the machine paused: the profiler is swapped while no CPU is logging to it."""
        await self.command("pause")
        try:
            await self.command(command)
        finally:
            await self.command("start")

    async def enable_profiler(self, path: Path | None = None) -> Path:
        """Renode's execution metrics from now on, into ``path`` (default: the log directory); returns the path."""
        path = Path(path) if path is not None else self.config.log_dir / f"{self.endpoint}.renode-profile.bin"
        await self._paused(f'machine EnableProfiler "{path}"')
        self._profile = ProfileReader(path, ProfileParser(self.endpoint, source=self.metrics_source))
        self._profiling = True
        return path

    async def disable_profiler(self) -> None:
        """No more metrics: the profiler writes to /dev/null from now on, and its file is closed (complete)."""
        if self._profiling:
            self._profiling = False
            await self._paused(f'machine EnableProfiler "{os.devnull}"')

    async def metrics(self) -> DeviceMetrics:
        if self._profile is None:
            return await super().metrics()
        profile = self._profile
        await asyncio.to_thread(profile.update)
        metrics = profile.parser.metrics()
        if profile.parser.pending and not self._profiling and self.process is None:
            metrics.notes.append(f"{profile.parser.pending} bytes at the end of {profile.path} are an incomplete"
                                 f" entry (Renode did not close the file)")
        if not metrics.instruction_series and not metrics.notes:
            metrics.notes.append(f"the profiler has written no instructions entry yet ({profile.path})")
        return metrics

    async def sleep_device(self, seconds: float) -> None:
        """Exactly ``seconds`` of virtual time: pause, run for that long, carry on."""
        await self.command("pause")
        try:
            await self.command(f"emulation RunFor {run_for_argument(seconds)}", timeout=COMMAND_TIMEOUT + 20 * seconds)
        finally:
            await self.command("start")

    async def stop(self) -> None:
        if self.uplink is not None:
            await self.uplink.close()
        if self._profiling and self.monitor is not None:
            with contextlib.suppress(TargetError):
                await self.disable_profiler()  # flushed and closed before Renode goes
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
        name = board.name if board else "(none)"
        if self.net is None:
            raise TargetError(
                f"{self.endpoint}: board {name} has no network on Renode: no Ethernet model (renode_ethernet) and no"
                f" SLIP UART (renode_slip_uart) in its board file, so the node cannot reach the gateway at {server_uri}"
            )
        if self.net == "eth":
            if board is None or not board.renode_ethernet:
                raise TargetError(
                    f"{self.endpoint}: net 'eth' but board {name} has no Ethernet model on Renode (no renode_ethernet"
                    f" in its board file; Renode has no LAN9118), so the node cannot reach the gateway at {server_uri};"
                    f" use net 'slip' (--net slip) on a board with a renode_slip_uart"
                )
            if not self.config.options.get("renode_tap"):
                raise TargetError(
                    f"{self.endpoint}: the board's Ethernet is only on a Renode switch; to reach the gateway at"
                    f" {server_uri} give the target a host TAP device (option renode_tap, e.g. 'renode-tap0')"
                )
        if self.uplink is not None:
            await self.uplink.start_bridge(server_uri)
        command = f"embserve connector lwm2m server_add {server_uri} {self.endpoint}"
        self._bootstrap = [command]
        await self.shell.exec(command, timeout)

    async def reboot(self, timeout: float = 30.0) -> None:
        """``kernel reboot``; then ``sl0`` up again and the bootstrap repeated, as after power-on.

        The socket terminals belong to the emulation, not the machine, so the
        console and the SLIP bridge carry on across the reset.
        """
        self.console.drain()
        await self.console.send_line("kernel reboot")
        # Past our own echo, so the prompt it was typed at is not taken for the new boot's.
        await self.console.expect(re.compile(r"kernel reboot\s*$"), timeout)
        await self.console.expect_prompt(timeout, self.shell.prompt)
        await self._after_boot()
        for command in self._bootstrap:
            await self.shell.exec(command)

    def describe(self) -> str:
        return f"{super().describe()}, network {self.net or 'none'}"
