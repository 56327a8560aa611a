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

Before ``mach create`` the target sets Renode's ``logLevel`` (warnings and
errors, :data:`hil.infra.renode.LOG_LEVEL`); Renode's log is capped
(:data:`hil.infra.renode.LOG_LIMIT`), and a console timeout or failure
names it and quotes its first and last warnings, where an emulated board
says why it went quiet. The console socket (and the SLIP socket) is
connected before ``start``, so the boot output is in the console log.
Device time is Renode's virtual time. Right after ``start`` (option
``virtual_time``, default true) :class:`~hil.targets.renode_clock.RenodeClock`
takes it over, at the host's pace while the firmware boots; then idle time is skipped whenever the gateway has nothing in flight
with the node (:meth:`Target.govern_time`), device time keeps the host's pace
otherwise, and readings carry the device time their message left at. A boot
that times out says how much virtual time the machine had run.

How the node reaches the gateway (``options["net"]``): ``"eth"`` for boards
with an Ethernet model (``renode_ethernet``), through a Renode switch and a
host TAP device (option ``renode_tap``, else the board's ``renode_tap``);
``"slip"`` for boards with a SLIP UART (``renode_slip_uart``). By default a
board with Ethernet uses it when there is a TAP device, and SLIP otherwise
when it has a SLIP UART (``stm32f4_discovery``); boards without Ethernet
(``nrf52840dk``, and ``mps2_an385``, whose LAN9118 Renode does not model)
use SLIP. With SLIP the harness runs :class:`hil.net.SlipBridge` over the
UART's socket terminal, the target runs ``net iface slip`` after each boot,
and the node is told the gateway is at 192.0.2.1 (or ``gateway_host``); see
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

Options (``TargetConfig.options``): ``net``, ``renode_tap``, ``boot_timeout``, ``virtual_time``, ``metrics``;
``slip_tun_fd`` (a TUN device the SLIP line is relayed to, in a fleet's
network namespace, see :mod:`hil.targets.slip`) with ``ipv4``, the node's
static address there (:meth:`~hil.targets.base.Target.configure_ipv4`).
:meth:`RenodeTarget.check_config` finds a configuration that cannot work
(no firmware, no platform, a network the board lacks) before Renode starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

from ..boards import Board, BoardError
from ..console import ConsoleTimeout
from ..infra.ports import LOOPBACK, free_port
from ..infra.process import InfraError, MissingBinaryError
from ..infra.renode import LOG_LEVEL, RenodeError, RenodeMonitor, RenodeProcess, renode_binary
from ..metrics import DeviceMetrics, ProfileParser, ProfileReader
from ..net import open_tcp_link
from .base import Target, TargetConfig, TargetError, TargetUnavailable, register_target
from .errors import TargetConfigError
from .renode_clock import RenodeClock
from .slip import SlipUplink
from .virtual_time import TimeGovernor

BOOT_TIMEOUT = 30.0  # Renode needs ~2.5 s from launch to the first UART line; platforms with SVDs more
COMMAND_TIMEOUT = 60.0  # LoadPlatformDescription retries SVD downloads when offline
NET_MODES = ("eth", "slip")


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


def default_net(board: Board | None, tap: str | None = None) -> str | None:
    """How a board on Renode reaches the gateway when nobody says.

    Ethernet when modelled and there is a TAP device to reach the host
    through, else SLIP when the board has the UART, else Ethernet (whose
    bootstrap then says a TAP device is missing).
    """
    if board is None:
        return None
    if board.renode_ethernet and tap:
        return "eth"
    if board.renode_slip_uart:
        return "slip"
    if board.renode_ethernet:
        return "eth"
    return None


@register_target
class RenodeTarget(Target):
    name = "renode"
    loads_firmware = True
    metrics_source = "Renode profiler"

    def __init__(self, config: TargetConfig):
        board = config.board
        self.tap: str | None = config.options.get("renode_tap") or (board.renode_tap if board else None)
        net: str | None = config.options.get("net") or default_net(board, self.tap)
        if net is not None and net not in NET_MODES:
            raise TargetConfigError(f"net={net!r}: the Renode target supports {' or '.join(NET_MODES)}")
        super().__init__(config)
        self.net = net
        self.process: RenodeProcess | None = None
        self.monitor: RenodeMonitor | None = None
        self.uplink = SlipUplink(self.endpoint, config.log_dir, config.gateway_host,
                                 tun_fd=config.options.get("slip_tun_fd")) if self.net == "slip" else None
        self._console_writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._bootstrap: list[str] = []  # repeated after a reboot
        self._lock = asyncio.Lock()  # one monitor conversation at a time
        self.firmware: Path | None = None  # known once started
        self._clock_poll: asyncio.Task[None] | None = None
        self.console.diagnostics.append(self._renode_diagnosis)
        self._profile: ProfileReader | None = None
        self._profiling = False

    def _platform(self) -> str:
        board = self.config.board
        if board is None or not board.renode_platform:
            name = board.name if board else "(none)"
            raise TargetConfigError(f"{self.endpoint}: board {name} has no renode_platform; Renode cannot run it")
        if board.renode_platform.startswith("@"):
            return board.renode_platform  # inside Renode's own tree, e.g. @platforms/boards/...
        try:
            return f"@{board.existing_file('renode_platform')}"
        except BoardError as e:
            raise TargetConfigError(f"{self.endpoint}: {e}") from None

    async def _firmware(self) -> Path:
        firmware = await self.resolve_firmware()
        if firmware is None:
            raise self._no_firmware()
        return firmware

    def _no_firmware(self) -> TargetConfigError:
        board = self.config.board
        return TargetConfigError(
            f"{self.endpoint}: no firmware: pass --firmware (board {board.name if board else '-'} names none)")

    def _slip_uart(self) -> str | None:
        if self.net != "slip":
            return None
        board = self.config.board
        if board is None or not board.renode_slip_uart:
            raise TargetConfigError(
                f"{self.endpoint}: net 'slip' needs a UART for the SLIP line, and board"
                f" {board.name if board else '(none)'} names none (board file field renode_slip_uart, e.g. \"uart1\")"
            )
        return sysbus_name(board.renode_slip_uart)

    def check_config(self) -> None:
        self._platform(), self._slip_uart()
        if self.check_firmware() is None:
            raise self._no_firmware()
        self._check_network()

    def _check_network(self, server_uri: str = "the gateway") -> None:
        """The node can reach the gateway the way :attr:`net` says; :class:`TargetConfigError` if not."""
        board = self.config.board
        name = board.name if board else "(none)"
        if self.net is None:
            raise TargetConfigError(
                f"{self.endpoint}: board {name} has no network on Renode: no Ethernet model (renode_ethernet) and no"
                f" SLIP UART (renode_slip_uart) in its board file, so the node cannot reach {server_uri}"
            )
        if self.net == "eth":
            if board is None or not board.renode_ethernet:
                raise TargetConfigError(
                    f"{self.endpoint}: net 'eth' but board {name} has no Ethernet model on Renode (no renode_ethernet"
                    f" in its board file; Renode has no LAN9118), so the node cannot reach {server_uri};"
                    f" use net 'slip' (--net slip) on a board with a renode_slip_uart"
                )
            if not self.tap:
                raise TargetConfigError(
                    f"{self.endpoint}: the board's Ethernet is only on a Renode switch; to reach {server_uri}"
                    f" give the target a host TAP device (--renode-tap, option renode_tap or the board's renode_tap,"
                    f" e.g. 'tap0'), or use --net slip on a board with a renode_slip_uart"
                )

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
        firmware = self.firmware = await self._firmware()
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
            # Warnings and errors only: a runaway firmware can make the model warn at a huge rate (the log is capped too).
            await self.monitor.execute(f"logLevel {LOG_LEVEL}", COMMAND_TIMEOUT)
            console_port = free_port()
            slip_port = free_port() if slip_uart else None
            before, after = bring_up_commands(
                machine_name(self.endpoint), platform, firmware, board.renode_console, console_port,
                ethernet=board.renode_ethernet if self.net == "eth" else None, tap=self.tap,
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
            gdb_port = self.config.gdb_port
            if gdb_port is not None:
                # The machine stays paused ("start" is not sent) until GDB connects and continues it.
                gdb_port = gdb_port or free_port()
                after = [c for c in after if c != "start"] + [f"machine StartGdbServer {gdb_port} true"]
            for command in after:
                await self.monitor.execute(command, COMMAND_TIMEOUT)
            if self.config.options.get("virtual_time", True):
                await self._take_over_time(board)  # while the firmware boots
            if gdb_port is not None:
                self._gdb_ready(gdb_port, firmware)
        except (RenodeError, OSError) as e:
            raise TargetError(f"{self.endpoint}: {e}\n{self.process.diagnosis()}\n(monitor transcript: {transcript})") from e
        timeout = float(self.config.options.get("boot_timeout", max(BOOT_TIMEOUT, board.boot_timeout))) * self.boot_wait_scale
        try:
            await self.console.expect_prompt(timeout, self.shell.prompt)
        except ConsoleTimeout as e:
            # Wall-clock time says little about a slow emulation: say how far the machine got.
            raise ConsoleTimeout(f"{e}\nRenode's virtual time then: {await self._virtual_time()}") from e
        await self._after_boot()
        if self.metrics_enabled:
            await self.enable_profiler()

    async def _take_over_time(self, board: Board) -> None:
        """From now on the harness's clock drives the machine's time (see hil.targets.renode_clock);
        until the gateway's exchanges are known it keeps the host's pace."""
        if self.net == "slip" and board.renode_slip_uart:
            peripheral, kind = sysbus_name(board.renode_slip_uart), "slip"
        elif self.net == "eth" and board.renode_ethernet:
            peripheral, kind = sysbus_name(board.renode_ethernet), "eth"
        else:
            return  # no network to watch for messages leaving: the machine keeps the host's pace
        clock = RenodeClock(self.command, self.config.log_dir, self.endpoint, peripheral, kind)
        await clock.attach()
        self.clock = clock
        self.governor = TimeGovernor(clock, self.endpoint)
        self._clock_poll = asyncio.create_task(self._poll_clock(clock), name=f"{self.endpoint} Renode clock")

    async def _poll_clock(self, clock: RenodeClock) -> None:
        while True:
            clock.poll()
            await asyncio.sleep(0.01)

    def _renode_diagnosis(self) -> str:
        """For console timeouts and failures: Renode's log and its warnings, where the cause usually is."""
        return self.process.diagnosis() if self.process is not None else ""

    async def _after_boot(self) -> None:
        if self.uplink is not None:
            await self.uplink.bring_up_interface(self.shell)
        await self.configure_ipv4()

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

    async def stop(self) -> None:
        poll, self._clock_poll = self._clock_poll, None
        if poll is not None:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
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
        self._check_network(f"the gateway at {server_uri}")
        if self.uplink is not None:
            await self.uplink.start_bridge(server_uri)
        self.record("bootstrap", server_uri=server_uri)
        command = f"embserve connector lwm2m server_add {server_uri} {self.endpoint}"
        self._bootstrap = [command]
        await self.shell.exec(command, timeout)

    async def reboot(self, timeout: float = 30.0) -> None:
        """``kernel reboot``; then ``sl0`` up again and the bootstrap repeated, as after power-on.

        The socket terminals belong to the emulation, not the machine, so the
        console and the SLIP bridge carry on across the reset.
        """
        self.console.drain()
        self.record("reboot")
        await self.console.send_line("kernel reboot")
        # Past our own echo, so the prompt it was typed at is not taken for the new boot's.
        await self.console.expect(re.compile(r"kernel reboot\s*$"), timeout)
        await self.console.expect_prompt(timeout, self.shell.prompt)
        await self._after_boot()
        for command in self._bootstrap:
            await self.shell.exec(command)

    def describe(self) -> str:
        return f"{super().describe()}, network {self.net or 'none'}"
