"""The Renode target and its monitor client, against fakes (Renode is not installable here).

Two fakes, both named so: a scripted monitor (a TCP server in the test that
speaks the monitor's telnet bytes, echo, colours and prompts) for the
conversation itself, and fake_renode.py, an executable standing in for the
``renode`` binary, for the whole bring-up. The real thing is exercised by
tests/integration/test_renode_emulation.py where Renode is installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hil.boards import get_board, load_board_file
from hil.console import ConsoleTimeout
from hil.infra.renode import RenodeError, RenodeMonitor, RenodeProcess, TelnetText
from hil.targets.base import (
    TargetConfig,
    TargetConfigError,
    TargetError,
    TargetUnavailable,
    get_target_class,
)
from hil.targets.renode import (
    RenodeTarget,
    bring_up_commands,
    default_net,
)

FAKE_RENODE = Path(__file__).with_name("fake_renode.py")
REPO = Path(__file__).resolve().parents[2]
TELNET_HELLO = bytes([255, 253, 0, 255, 251, 1, 255, 251, 3, 255, 252, 34])


# -- the monitor conversation, against a scripted fake monitor ---------------------------


class FakeMonitor:
    """Speaks like Renode's monitor: telnet option bytes, echo, coloured prompts, errors in text."""

    def __init__(self, replies: dict[str, str]):
        self.replies = replies
        self.received: list[str] = []
        self.machine: str | None = None
        self.server: asyncio.AbstractServer | None = None

    def prompt(self) -> bytes:
        return f"\x1b[33;1m({self.machine or 'monitor'}) \x1b[0m".encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(TELNET_HELLO + b"Renode, version 1.16.1.0\r\n\r\n" + self.prompt())
        while line := await reader.readline():
            command = line.decode().strip()
            self.received.append(command)
            if command.startswith("mach create"):
                self.machine = command.split('"')[1]
            if command == "hang":
                continue  # never answers
            if command == "drop":
                writer.close()
                return
            # echo arrives byte by byte from the line editor, the reply in pieces
            for ch in command:
                writer.write(ch.encode())
            reply = self.replies.get(command, "")
            writer.write(b"\r\n" + (reply.replace("\n", "\r\n").encode() + b"\r\n" if reply else b""))
            await writer.drain()
            writer.write(self.prompt())
            await writer.drain()

    async def __aenter__(self) -> "FakeMonitor":
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def fake_monitor() -> AsyncIterator[FakeMonitor]:
    replies = {
        "version": "Renode, version 1.16.1.0",
        "sysbus LoadELF @/nope.elf": "\x1b[31;1mThere was an error executing command 'sysbus LoadELF @/nope.elf'\x1b[0m\n"
                                     "Could not find file '/nope.elf'",
        "frobnicate": "\x1b[31;1mNo such command or device: frobnicate\x1b[0m",
        "sysbus.uart0": "The following methods are available:\n - Void WriteChar (Byte value)",
    }
    async with FakeMonitor(replies) as monitor:
        yield monitor


async def test_fake_monitor_conversation_follows_prompt_changes(fake_monitor: FakeMonitor, tmp_path: Path) -> None:
    transcript = tmp_path / "monitor.log"
    monitor = await RenodeMonitor.connect("127.0.0.1", fake_monitor.port, timeout=5, transcript=transcript)
    try:
        assert monitor.prompt == "monitor"
        assert await monitor.execute("version", 5) == "Renode, version 1.16.1.0"
        assert await monitor.execute('mach create "node1"', 5) == ""
        assert monitor.prompt == "node1"
        out = await monitor.execute("sysbus.uart0", 5)
        assert out.splitlines() == ["The following methods are available:", " - Void WriteChar (Byte value)"]
    finally:
        monitor.close()
    assert fake_monitor.received == ["version", 'mach create "node1"', "sysbus.uart0"]
    log = transcript.read_text()
    assert "> version" in log and "(node1)" in log and "\x1b" not in log and "\xff" not in log


async def test_fake_monitor_errors_raise_with_renodes_words(fake_monitor: FakeMonitor) -> None:
    monitor = await RenodeMonitor.connect("127.0.0.1", fake_monitor.port, timeout=5)
    try:
        with pytest.raises(RenodeError) as info:
            await monitor.execute("sysbus LoadELF @/nope.elf", 5)
        assert "Could not find file '/nope.elf'" in str(info.value)
        with pytest.raises(RenodeError, match="No such command or device: frobnicate"):
            await monitor.execute("frobnicate", 5)
        assert await monitor.execute("version", 5)  # still in step after errors
    finally:
        monitor.close()


async def test_fake_monitor_silence_and_hangup_are_reported(fake_monitor: FakeMonitor) -> None:
    monitor = await RenodeMonitor.connect("127.0.0.1", fake_monitor.port, timeout=5)
    try:
        with pytest.raises(RenodeError, match=r"no prompt after 'hang' within 0.3 s"):
            await monitor.execute("hang", 0.3)
    finally:
        monitor.close()
    monitor = await RenodeMonitor.connect("127.0.0.1", fake_monitor.port, timeout=5)
    try:
        with pytest.raises(RenodeError, match="closed the connection"):
            await monitor.execute("drop", 5)
    finally:
        monitor.close()


def test_telnet_text_strips_negotiation_and_keeps_escaped_ff() -> None:
    text = TelnetText()
    data = TELNET_HELLO + b"a\xff\xffb" + bytes([255, 250, 24, 1, 255, 240]) + b"\x1b[32mc\x1b[0m\r\n"
    assert text.feed(data[:5]) + text.feed(data[5:]) == "a\ufffdb" "c\n"


def test_bring_up_sequence_connects_console_before_start(tmp_path: Path) -> None:
    before, after = bring_up_commands("node1", "@/r/mps2_an385.repl", Path("/fw/e.elf"), "sysbus.uart0", 4567,
                                      ethernet="sysbus.ethernet", tap="renode-tap0")
    assert before == [
        'mach create "node1"',
        "machine LoadPlatformDescription @/r/mps2_an385.repl",
        "sysbus LoadELF @/fw/e.elf",
        'emulation CreateServerSocketTerminal 4567 "term" false',
        "connector Connect sysbus.uart0 term",
    ]
    assert after == ['emulation CreateSwitch "switch"', "connector Connect sysbus.ethernet switch",
                     'emulation CreateTap "renode-tap0" "tap"', "connector Connect host.tap switch", "start"]


def test_bring_up_sequence_with_slip_creates_its_terminal_before_start() -> None:
    before, after = bring_up_commands("node1", "@/r/mps2_an385.repl", Path("/fw/e.elf"), "sysbus.uart0", 4567,
                                      slip_uart="sysbus.uart1", slip_port=4568)
    assert before[-4:] == [
        'emulation CreateServerSocketTerminal 4567 "term" false',
        "connector Connect sysbus.uart0 term",
        'emulation CreateServerSocketTerminal 4568 "slip" false',
        "connector Connect sysbus.uart1 slip",
    ]
    assert after == ["start"]
    with pytest.raises(ValueError, match="needs the port of its socket terminal"):
        bring_up_commands("node1", "@/r.repl", Path("/fw/e.elf"), "sysbus.uart0", 4567, slip_uart="sysbus.uart1")


def test_default_network_follows_the_board_file() -> None:
    assert default_net(get_board("mps2_an385")) == "slip"  # no LAN9118 on Renode: SLIP on UART1
    assert get_board("mps2_an385").renode_slip_uart == "uart1"
    assert default_net(get_board("nrf52840dk")) == "slip"  # no Ethernet on the nRF52840: SLIP on UARTE1
    # The STM32F4's Ethernet reaches the host only through a TAP device; without one, SLIP on USART3.
    assert default_net(get_board("stm32f4_discovery")) == "slip"
    assert default_net(get_board("stm32f4_discovery"), tap="tap0") == "eth"
    assert default_net(get_board("mps2_an385"), tap="tap0") == "slip"  # a TAP does not make a LAN9118


def test_project_platform_wires_the_uarts_as_the_firmware_expects() -> None:
    """renode/mps2_an385.repl against the firmware's board facts: console and SLIP UART at the same addresses and IRQs."""
    board = get_board("mps2_an385")
    config = REPO / "firmware/src/boards/mps2_an385/board_config.h"
    facts = {name: int(value.rstrip("u"), 0) for name, value in re.findall(
        r"#define ((?:UART[01]_BASE|IRQ_UART[01]_(?:RX|TX)))\s+(\w+)", config.read_text())}
    repl = board.resolve_path(board.renode_platform or "").read_text()
    uarts = {
        name: (int(address, 16), {line: int(irq) for line, irq in re.findall(r"(\w+Interrupt) -> nvic@(\d+)", body)})
        for name, address, body in re.findall(
            r"^(\w+): UART\.CMSDK_APB_UART @ sysbus (0x[0-9A-Fa-f]+)\n((?:[ \t]+.*\n)*)", repl, re.M)
    }
    for uart, n in ((board.console, 0), (board.renode_slip_uart, 1)):
        assert uart in uarts, f"{uart} is not a CMSDK UART in {board.renode_platform}"
        assert uarts[uart] == (facts[f"UART{n}_BASE"], {"RxInterrupt": facts[f"IRQ_UART{n}_RX"],
                                                         "TxInterrupt": facts[f"IRQ_UART{n}_TX"]})


# -- the whole target, against the fake renode executable --------------------------------


@pytest.fixture
def fake_renode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    launcher = tmp_path / "renode"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_RENODE} \"$@\"\n")
    launcher.chmod(0o755)
    log = tmp_path / "fake-renode-commands.log"
    monkeypatch.setenv("RENODE", str(launcher))
    monkeypatch.setenv("FAKE_RENODE_LOG", str(log))
    return log


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    elf = tmp_path / "embserve.elf"
    elf.write_bytes(b"\x7fELF")
    return elf


def renode_target(tmp_path: Path, firmware: Path, board_name: str = "mps2_an385", **options) -> RenodeTarget:
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board(board_name),
                          firmware=firmware, options=options)
    target = get_target_class("renode")(config)
    assert isinstance(target, RenodeTarget)
    return target


async def test_fake_renode_brings_the_board_up_and_runs_virtual_time(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    target = renode_target(tmp_path, firmware)
    async with target:
        assert target.net == "slip"
        assert (await target.shell.exec("help"))[0] == "Available commands:"
        assert target.clock is not None and target.governor is not None
        before = await target.clock.device_time()
        await target.sleep_device(0.5)  # no gateway to watch: device time keeps the host's pace
        assert await target.clock.device_time() - before >= 0.5
        pid_file = tmp_path / "logs" / "node1.renode.pid"
        assert pid_file.read_text().strip().isdigit()
    assert target.process is None
    commands = fake_renode.read_text().splitlines()
    repl = get_board("mps2_an385").resolve_path("renode/mps2_an385.repl")
    # Private HOME and TMPDIR: Renode's start-up clean-up of $TMPDIR/renode-* touches nobody else's directories.
    assert commands[0] == f"HOME={tmp_path / 'logs' / 'node1.renode-home'} TMPDIR={tmp_path / 'logs' / 'node1.renode-tmp'}"
    assert commands[1] == "logLevel 2"  # warnings and errors only, set before the machine exists
    commands = commands[1:]
    assert commands[1:8] == [
        'mach create "node1"',
        f"machine LoadPlatformDescription @{repl}",
        f"sysbus LoadELF @{firmware}",
        commands[4],
        "connector Connect sysbus.uart0 term",
        commands[6],
        "connector Connect sysbus.uart1 slip",
    ]
    assert commands[4].startswith("emulation CreateServerSocketTerminal ") and commands[4].endswith(' "term" false')
    assert commands[6].startswith("emulation CreateServerSocketTerminal ") and commands[6].endswith(' "slip" false')
    assert commands[4].split()[2] != commands[6].split()[2]  # two terminals, two ports
    logs = tmp_path / "logs"
    # Booted at the host's pace, then the harness's clock takes the machine's time over.
    assert commands[8:13] == [
        "start",
        f"include @{logs / 'node1.clock.py'}",
        f'hil_clock "sysbus.uart1" "slip" "{logs / "node1.keep-pace"}" "{logs / "node1.tx.log"}"',
        'emulation SetGlobalQuantum "0.01"',
        "emulation SetGlobalAdvanceImmediately true",
    ]
    assert commands[-1] == "quit" and "pause" not in commands, "the clock never pauses nor resumes the machine"
    assert "mc_hil_clock" in (logs / "node1.clock.py").read_text()
    console = (tmp_path / "logs" / "node1.console.log").read_text()
    assert "*** Booting embServe reference firmware" in console
    # After boot the node's network is the SLIP link on UART1.
    assert console.index("net iface slip") > console.index("*** Booting")
    assert "sl0 (SLIP on UART1) is up: address 192.0.2.2" in console


async def test_fake_renode_skips_idle_time_only_while_the_gateway_has_nothing_in_flight(
    tmp_path: Path, fake_renode: Path, firmware: Path
) -> None:
    from hil.gateway.in_flight import InFlight

    exchanges = InFlight()
    async with renode_target(tmp_path, firmware) as target:
        assert target.clock is not None
        target.govern_time(exchanges)
        await asyncio.sleep(0.15)  # the settle time
        assert target.governor.skipping and not (tmp_path / "logs" / "node1.keep-pace").exists()
        loop = asyncio.get_running_loop()
        start, wall = await target.clock.device_time(), loop.time()
        await target.sleep_device(5.0)
        assert loop.time() - wall < 2.0, "idle device time was skipped"
        with exchanges.track("node1"):
            assert (tmp_path / "logs" / "node1.keep-pace").exists() and not target.governor.skipping
            start, wall = await target.clock.device_time(), loop.time()
            await asyncio.sleep(0.5)
            assert await target.clock.device_time() - start < (loop.time() - wall) + 0.1, "kept the host's pace"
        await asyncio.sleep(0.15)
        assert target.governor.skipping


class UdpEcho(asyncio.DatagramProtocol):
    """Stands in for the gateway: answers every datagram with ``echo: <datagram>``."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        self.transport.sendto(b"echo: " + data, addr)  # type: ignore[attr-defined]


async def console_shows(target: RenodeTarget, text: str, timeout: float = 5.0) -> None:
    """Wait until a console line contains ``text`` (whoever consumed it: the shell may have)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(text in line.text for line in target.console.history):
        if loop.time() > deadline:
            raise TimeoutError(f"no console line with {text!r} within {timeout} s:\n{target.console.tail()}")
        await asyncio.sleep(0.02)


async def test_fake_renode_slip_line_carries_the_nodes_udp_through_the_bridge(
    tmp_path: Path, fake_renode: Path, firmware: Path
) -> None:
    loop = asyncio.get_running_loop()
    transport, echo = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with renode_target(tmp_path, firmware) as target:
            uri = target.device_server_uri("127.0.0.1", port)
            assert uri == f"coap://192.0.2.1:{port}"  # the node is told the SLIP peer, not the host's loopback
            assert target.bridge is None  # started by the bootstrap, once the gateway is known
            await target.bootstrap(uri)
            # The node's datagram reached the host's UDP service, and its answer reached the node.
            await console_shows(target, f"[net] udp from 192.0.2.1:{port}: echo: register node1")
            assert echo.received == [b"register node1"]
            stats = target.bridge.stats.copy()
            assert stats.datagrams_to_gateway == 1 and stats.datagrams_to_device == 1 and stats.dropped == 0
            assert stats.noise_bytes == len("boot noise")  # bytes before the first frame: skipped, not dropped

            # A reboot brings sl0 up again and repeats the bootstrap; the bridge carries on.
            bridge = target.bridge
            await target.reboot(timeout=5)
            assert target.bridge is bridge
            await bridge.wait_for(lambda s: s.datagrams_to_device >= 2, "the answer after the reboot", timeout=5)
            assert echo.received == [b"register node1"] * 2
    finally:
        transport.close()
    assert target.bridge is None
    console = (tmp_path / "logs" / "node1.console.log").read_text()
    reboot = console.index("kernel reboot")
    assert "net iface slip" in console[reboot:] and f"server_add coap://192.0.2.1:{port} node1" in console[reboot:]
    slip_log = (tmp_path / "logs" / "node1.slip.log").read_text()
    assert f"192.0.2.1 -> 127.0.0.1:{port}" in slip_log
    assert "datagrams to gateway 2 / to device 2" in slip_log and "dropped 0" in slip_log


async def test_fake_renode_board_with_ethernet_joins_a_switch(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    async with renode_target(tmp_path, firmware, "stm32f4_discovery", renode_tap="renode-tap0"):
        pass
    commands = fake_renode.read_text().splitlines()
    repl = get_board("stm32f4_discovery").resolve_path("renode/stm32f4_discovery.repl")
    assert f"machine LoadPlatformDescription @{repl}" in commands
    assert "connector Connect sysbus.usart2 term" in commands
    after_console = commands[commands.index("connector Connect sysbus.usart2 term") + 1:]
    assert after_console[:5] == [
        'emulation CreateSwitch "switch"', "connector Connect sysbus.ethernet switch",
        'emulation CreateTap "renode-tap0" "tap"', "connector Connect host.tap switch", "start"]
    # The harness's clock stamps what leaves through the Ethernet MAC.
    assert after_console[6].startswith('hil_clock "sysbus.ethernet" "eth" ') and after_console[-1] == "quit"


async def test_fake_renode_refusing_a_command_names_it_and_the_logs(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "odd.toml").write_text('name = "odd"\narch = "armv7-m"\nbackends = ["renode"]\nconsole = "usart9"\n'
                                     f'renode_platform = "{get_board("mps2_an385").resolve_path("renode/mps2_an385.repl")}"\n')
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=load_board_file(boards / "odd.toml"),
                          firmware=firmware)
    with pytest.raises(TargetError) as info:
        async with RenodeTarget(config):
            pass
    message = str(info.value)
    assert "Renode refused 'connector Connect sysbus.usart9 term'" in message
    assert "Could not find peripheral 'sysbus.usart9'" in message
    assert str(tmp_path / "logs" / "node1.renode-monitor.log") in message
    assert fake_renode.read_text().splitlines()[-1] == "quit"  # Renode was told to quit all the same


async def test_fake_renode_silent_uart_times_out_with_console_log(
    tmp_path: Path, fake_renode: Path, firmware: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RENODE_SILENT_UART", "1")
    with pytest.raises(ConsoleTimeout) as info:
        async with renode_target(tmp_path, firmware, boot_timeout=0.5):
            pass
    assert "within 0.5 s" in str(info.value) and "node1.console.log" in str(info.value)
    assert re.search(r"Renode's virtual time then: \d+\.\d{6}s \(fake\)", str(info.value)), str(info.value)


async def test_ethernet_on_a_board_without_an_ethernet_model_cannot_bootstrap(
    tmp_path: Path, fake_renode: Path, firmware: Path
) -> None:
    async with renode_target(tmp_path, firmware, net="eth") as target:
        assert target.uplink is None
        with pytest.raises(TargetError, match="no Ethernet model on Renode.*use net 'slip'"):
            await target.bootstrap("coap://10.0.0.1:5683")
    assert not any("slip" in line for line in fake_renode.read_text().splitlines())  # no SLIP terminal either


async def test_board_with_no_network_on_renode_boots_but_cannot_bootstrap(
    tmp_path: Path, fake_renode: Path, firmware: Path
) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    repl = get_board("mps2_an385").resolve_path("renode/mps2_an385.repl")
    (boards / "quiet.toml").write_text(f'name = "quiet"\narch = "armv7-m"\nbackends = ["renode"]\nrenode_platform = "{repl}"\n')
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=load_board_file(boards / "quiet.toml"),
                          firmware=firmware)
    async with RenodeTarget(config) as target:
        assert target.net is None
        with pytest.raises(TargetError, match="board quiet has no network on Renode.*renode_slip_uart"):
            await target.bootstrap("coap://10.0.0.1:5683")


async def test_slip_needs_a_slip_uart_in_the_board_file(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "ethonly.toml").write_text('name = "ethonly"\narch = "armv7e-m"\nbackends = ["renode"]\n'
                                         'renode_platform = "@platforms/boards/stm32f4_discovery-kit.repl"\n'
                                         'renode_ethernet = "sysbus.ethernet"\n')
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=load_board_file(boards / "ethonly.toml"),
                          firmware=firmware, options={"net": "slip"})
    with pytest.raises(TargetConfigError, match=r"board ethonly names none \(board file field renode_slip_uart"):
        async with RenodeTarget(config):
            pass
    assert not os.path.exists(fake_renode), "Renode must not be started for a request that cannot work"
    with pytest.raises(TargetConfigError, match="net='wifi': the Renode target supports eth or slip"):
        renode_target(tmp_path, firmware, net="wifi")


async def test_missing_renode_is_unavailable_with_install_hint(
    tmp_path: Path, firmware: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RENODE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(TargetUnavailable) as info:
        async with renode_target(tmp_path, firmware):
            pass
    assert "renode is not on PATH" in str(info.value)
    assert "portable" in str(info.value) and "renode-run" in str(info.value) and "renode-colab" not in str(info.value)


async def test_missing_platform_and_firmware_are_named(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    with pytest.raises(TargetError, match="board frdm_k64f has no renode_platform"):
        async with renode_target(tmp_path, firmware, "frdm_k64f"):
            pass
    with pytest.raises(TargetError, match="firmware .*missing.elf does not exist"):
        async with renode_target(tmp_path, tmp_path / "missing.elf"):
            pass
    assert not os.path.exists(fake_renode), "Renode must not be started for a request that cannot work"


def test_hil_suite_on_renode_skips_with_the_reason_when_renode_is_missing(tmp_path: Path) -> None:
    # $RENODE naming no executable stands for "not installed", even where Renode is.
    env = dict(os.environ, RENODE=str(tmp_path / "no-renode"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hil", "-q", "-rs", "-p", "no:cacheprovider", "--target", "renode",
         "--board", "mps2_an385", "--hil-log-dir", str(tmp_path / "hil-logs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert summary.startswith("6 skipped in "), run.stdout[-3000:]  # not errors, not "passed" on nothing
    assert run.stdout.count("is not an executable file") == 6, run.stdout[-3000:]


async def test_fake_renode_runaway_firmware_log_is_cut_and_the_timeout_quotes_its_warnings(
    tmp_path: Path, fake_renode: Path, firmware: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A firmware for another board: the model warns at a huge rate, the console stays silent."""
    monkeypatch.setenv("FAKE_RENODE_WARNINGS", str(3_000_000))
    monkeypatch.setattr(RenodeProcess, "__init__", _small_log_limit(RenodeProcess.__init__, 200_000))
    with pytest.raises(ConsoleTimeout) as info:
        async with renode_target(tmp_path, firmware, boot_timeout=2.0):
            pass
    message = str(info.value)
    log = tmp_path / "logs" / "node1.renode.log"
    assert f"Renode log: {log} ({log} was cut at 0.2 MB;" in message, message
    assert "its last warnings:" in message and "[WARNING] cpu: CPU abort detected, halting." in message, message
    assert log.stat().st_size < 250_000  # the limit, the start line and the notes about the cut
    text = log.read_text()
    assert "[embserve-hil] log cut at 0.2 MB; further output is dropped" in text
    assert text.rstrip().splitlines()[-1].startswith(f"[embserve-hil] {log} was cut at 0.2 MB; 2.")  # ~2.8 MB left out


def _small_log_limit(init, limit: int):
    def patched(self, *args, **kwargs):
        kwargs["log_limit"] = limit
        init(self, *args, **kwargs)
    return patched


async def test_fake_renode_tap_from_the_board_file_joins_the_switch(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    stock = get_board("stm32f4_discovery").source.read_text()
    (boards / "bench_stm32.toml").write_text(stock.replace('name = "stm32f4_discovery"', 'name = "bench_stm32"')
                                             .replace(f'renode_platform = "renode/', f'renode_platform = "{REPO}/renode/')
                                             + 'renode_tap = "tap7"\n')
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=load_board_file(boards / "bench_stm32.toml"),
                          firmware=firmware)
    async with RenodeTarget(config) as target:
        assert (target.net, target.tap) == ("eth", "tap7")
    assert 'emulation CreateTap "tap7" "tap"' in fake_renode.read_text().splitlines()
    # The option wins over the board file.
    config.options["renode_tap"] = "tap8"
    assert RenodeTarget(config).tap == "tap8"


def test_configuration_errors_are_found_before_fake_renode_starts(tmp_path: Path, fake_renode: Path, firmware: Path) -> None:
    with pytest.raises(TargetConfigError, match="the board's Ethernet is only on a Renode switch.*--renode-tap"):
        renode_target(tmp_path, firmware, "stm32f4_discovery", net="eth").check_config()
    with pytest.raises(TargetConfigError, match="no Ethernet model on Renode"):
        renode_target(tmp_path, firmware, net="eth").check_config()
    with pytest.raises(TargetConfigError, match=r"firmware .*missing.elf does not exist$"):
        renode_target(tmp_path, tmp_path / "missing.elf").check_config()
    renode_target(tmp_path, firmware, "nrf52840dk").check_config()  # SLIP on UARTE1: nothing missing
    assert not os.path.exists(fake_renode), "Renode must not be started for a check"


@pytest.mark.parametrize(("name", "firmware", "build"), [("bench_nrf", "reference", "bench_nrf"),
                                                       ("bench_esp", "reference:esp32", "esp32")])
def test_board_naming_a_reference_build_that_does_not_exist_is_a_config_error(
    tmp_path: Path, fake_renode: Path, name: str, firmware: str, build: str
) -> None:
    stock = get_board("nrf52840dk").source.read_text()
    path = tmp_path / f"{name}.toml"
    path.write_text(stock.replace('name = "nrf52840dk"', f'name = "{name}"')
                    .replace('firmware = "reference"', f'firmware = "{firmware}"')
                    .replace('renode_platform = "renode/', f'renode_platform = "{REPO}/renode/'))
    target = RenodeTarget(TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=load_board_file(path)))
    with pytest.raises(TargetConfigError) as info:
        target.check_config()
    assert str(info.value) == (
        f"node1: board file {path}: field 'firmware' is {firmware!r}, but the reference firmware has no build for"
        f" board {build!r} (it builds for mps2_an385, nrf52840dk, stm32f4_discovery; name one as"
        ' "reference:<board>", or a firmware file)')
    ok = path.read_text().replace(f'firmware = "{firmware}"', 'firmware = "reference:nrf52840dk"')
    path.write_text(ok)
    RenodeTarget(TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=load_board_file(path))).check_config()
    assert not os.path.exists(fake_renode), "Renode must not be started for a check"


def test_hil_suite_on_fake_renode_with_a_board_without_firmware_stops_once_with_one_line(tmp_path: Path, fake_renode: Path) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    repl = get_board("mps2_an385").resolve_path("renode/mps2_an385.repl")
    (boards / "nofw.toml").write_text(f'name = "nofw"\narch = "armv7-m"\nbackends = ["renode"]\n'
                                      f'renode_platform = "{repl}"\nrenode_slip_uart = "uart1"\n')
    env = dict(os.environ, EMBSERVE_HIL_BOARDS=str(boards))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hil", "-q", "-p", "no:cacheprovider", "--target", "renode",
         "--board", "nofw", "--hil-log-dir", str(tmp_path / "hil-logs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, out[-3000:]
    assert out.count("embserve-hil: node1: no firmware: pass --firmware (board nofw names none)") == 1, out[-3000:]
    assert "Traceback" not in out and "FAILED" not in out and "passed" not in out, out[-3000:]
    assert not os.path.exists(fake_renode), "Renode must not be started for a request that cannot work"


class FakePytestConfig:
    """Stands in for pytest.Config: only the command-line options the plugin reads."""

    def __init__(self, **options: object) -> None:
        self.options = {"--firmware": None, "--serial-port": None, "--net-serial-port": None, "--gateway-host": None,
                        "--sim-speed": 10.0, "--net": None, "--renode-tap": None, "--device-time": "virtual",
                        "--hil-gdb": None, **options}

    def getoption(self, name: str) -> object:
        return self.options[name]


def test_renode_tap_option_reaches_the_target_with_fake_pytest_config(tmp_path: Path) -> None:
    from hil.pytest_plugin import _target_config

    board = get_board("stm32f4_discovery")
    config = _target_config(FakePytestConfig(**{"--renode-tap": "tap3"}), board, tmp_path, "node1", None)
    target = RenodeTarget(config)
    assert (target.tap, target.net) == ("tap3", "eth")
    assert RenodeTarget(_target_config(FakePytestConfig(), board, tmp_path, "node1", None)).net == "slip"
