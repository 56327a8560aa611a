"""The serial target for real: the reference firmware on QEMU with its console on a pseudo-terminal.

QEMU's ``-serial pty`` gives UART0 a tty device node (/dev/pts/N), which the
serial target opens as it would open a USB-serial adapter; the board's reset
is QEMU's monitor (``system_reset``) through a reset command, as a board file
would name ``nrfjprog --reset``. The node reaches the gateway through QEMU
user networking, where the host is 10.0.2.2: the address the board is told
(``--gateway-host``) differs from where the gateway listens.

The same set-up behind an RFC 2217 server on loopback stands in for a remote
bench: a labgrid exporter serving the board's port with ser2net.

The firmware is built once per session into a private directory (qemu_helpers).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import run_child_pytest
from conftest import firmware_elf as build_firmware

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine
from hil.infra.rfc2217 import Rfc2217Server
from hil.lwm2m.model import Path as LwPath
from hil.targets.base import TargetConfig
from hil.targets.serial import SerialTarget

GUEST_HOST_ALIAS = "10.0.2.2"  # the host's loopback as QEMU user networking shows it to the guest
#: a bench whose board runs the reference firmware: `sensor set` and shell inputs, declared (a serial board has neither by default)
REFERENCE_BENCH = 'inject = ["temperature"]\nservice_input = "shell"\n'

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_firmware(tmp_path_factory)  # once per session; skips without the tools


@pytest.fixture
async def pty_board(firmware_elf: Path, tmp_path: Path) -> AsyncIterator[QemuMachine]:
    async with QemuMachine(firmware_elf, console="pty", log_dir=tmp_path / "qemu") as board:
        assert board.pty and board.pty.startswith("/dev/pts/")
        yield board


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(host="127.0.0.1", port=0) as gw:
        yield gw


def serial_config(tmp_path: Path, port: str, reset_command: str) -> TargetConfig:
    return TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board("mps2_an385"), serial_port=port,
                        gateway_host=GUEST_HOST_ALIAS, options={"reset_command": reset_command})


async def bring_up(target: SerialTarget, gateway: Gateway) -> None:
    uri = target.device_server_uri(gateway.host, gateway.port)
    assert uri == f"coap://{GUEST_HOST_ALIAS}:{gateway.port}"
    await target.bootstrap(uri)
    await gateway.wait_for_registration("node1", timeout=15)


async def test_serial_target_drives_qemu_through_its_tty(pty_board: QemuMachine, gateway: Gateway, tmp_path: Path) -> None:
    async with SerialTarget(serial_config(tmp_path, pty_board.pty, pty_board.reset_command)) as target:
        assert os.path.realpath(target.port.port) == pty_board.pty  # a tty device node, opened as a serial port
        await bring_up(target, gateway)
        device = await gateway.read("node1", "/3/0")
        assert device[LwPath(3, 0, 1)] == "mps2-an385"
        await target.set_sensor("temperature", 23.5)
        assert (await gateway.read("node1", "/3303/0/5700"))[LwPath(3303, 0, 5700)] == pytest.approx(23.5)
    console = (tmp_path / "logs" / "node1.console.log").read_text()
    assert "Registration Done (EP='node1')" in console
    # The reader was attached before the reset: the boot banner is in the log.
    assert console.index("*** Booting embServe reference firmware") < console.index("server_add")


async def test_serial_target_reaches_qemu_over_rfc2217(pty_board: QemuMachine, gateway: Gateway, tmp_path: Path) -> None:
    async with Rfc2217Server(pty_board.pty) as server:
        async with SerialTarget(serial_config(tmp_path, server.url, pty_board.reset_command)) as target:
            await bring_up(target, gateway)
            lines = await target.shell.exec("help")
            assert any(line.split()[0] == "embserve" for line in lines if line.strip()), lines
        assert server.clients_served == 1
    assert "*** Booting embServe reference firmware" in (tmp_path / "logs" / "node1.console.log").read_text()


async def run_hil_suite(tmp_path: Path, board: QemuMachine, port: str, *extra: str,
                        gateway_host: str | None = GUEST_HOST_ALIAS, capabilities: str = REFERENCE_BENCH) -> tuple[int, str]:
    """tests/hil in a child pytest with --target serial; the bench's board file is a user board file
    with the given ``capabilities`` fields."""
    boards = tmp_path / "lab-boards"
    boards.mkdir()
    (boards / "mps2_an385_bench.toml").write_text(
        'name = "mps2_an385_bench"\n'
        'description = "reference firmware on QEMU, console on a pty, reset through the QEMU monitor"\n'
        'arch = "armv7-m"\nbackends = ["serial"]\nboot_timeout = 15\n'
        f"reset_command = {board.reset_command!r}\n" + capabilities
    )
    env = dict(os.environ, EMBSERVE_HIL_BOARDS=str(boards))
    host = ["--gateway-host", gateway_host] if gateway_host else []
    return await run_child_pytest(
        ["tests/hil", "-q", "-p", "no:cacheprovider", "-rs",
         "--target", "serial", "--board", "mps2_an385_bench", "--serial-port", port,
         *host, "--hil-log-dir", str(tmp_path / "hil-logs"), *extra],
        env=env, timeout=900,
    )


async def hil_suite_over_the_pty(pty_board: QemuMachine, tmp_path: Path) -> None:
    code, out = await run_hil_suite(tmp_path, pty_board, pty_board.pty)
    assert code == 0 and "4 passed" in out, out[-4000:]

# The full-suite run over the pty is test_serial_slip_qemu.py's
# test_hil_suite_on_four_bench_rigs_at_once: the rigs wait out the service's
# first period in real time, so they run side by side there.


async def test_remote_bench_over_rfc2217_runs_a_hil_test(pty_board: QemuMachine, tmp_path: Path) -> None:
    # The RFC 2217 server stands in for a labgrid exporter's ser2net: a place's
    # NetworkSerialPort is host:port, and the target opens rfc2217://host:port.
    async with Rfc2217Server(pty_board.pty) as exporter:
        code, out = await run_hil_suite(tmp_path, pty_board, exporter.url, "-k", "test_deploy_reports_readings")
        assert exporter.clients_served == 1
    assert code == 0 and "1 passed" in out, out[-4000:]
