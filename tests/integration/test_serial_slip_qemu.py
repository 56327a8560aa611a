"""A board without a network joins the gateway through the host: the serial target's SLIP port, for real.

The reference firmware runs on QEMU with no NIC at all (``-nic none``): its
console (UART0) is one pseudo-terminal and UART1 a second one, as a bench
board's two USB-serial adapters would be. The serial target opens the first
as the console and the second as ``--net-serial-port``; the only way from
the node to the gateway (listening on loopback) is the SLIP bridge on that
second port, at the firmware's SLIP peer 192.0.2.1.

The firmware build, the gateway and the child HIL run are test_serial_qemu.py's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from capability_rigs import production_firmware_bench, stimulus_bench
from test_serial_qemu import firmware_elf, gateway, hil_suite_over_the_pty, pty_board, run_hil_suite  # noqa: F401  (fixtures shared with the console-only rig)

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine
from hil.lwm2m.model import Path as LwPath
from hil.targets.base import TargetConfig
from hil.targets.serial import SerialTarget

SLIP_PEER = "192.0.2.1"  # the firmware's SLIP peer, where the node is told the gateway is

pytestmark = pytest.mark.emulation


@pytest.fixture
async def slip_board(firmware_elf: Path, tmp_path: Path) -> AsyncIterator[QemuMachine]:  # noqa: F811
    async with QemuMachine(firmware_elf, console="pty", slip=True, log_dir=tmp_path / "qemu", nic=None) as board:
        assert board.pty and board.slip_pty and board.pty != board.slip_pty
        yield board


def slip_config(tmp_path: Path, board: QemuMachine) -> TargetConfig:
    assert board.pty and board.slip_pty
    return TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board("mps2_an385"),
                        serial_port=board.pty, net_serial_port=board.slip_pty,
                        options={"reset_command": board.reset_command})


async def test_board_without_network_registers_through_its_slip_port(
    slip_board: QemuMachine, gateway: Gateway, tmp_path: Path  # noqa: F811
) -> None:
    async with SerialTarget(slip_config(tmp_path, slip_board)) as target:
        assert target.uplink is not None and target.uplink.link is not None
        assert os.path.realpath(target.uplink.link.port.port) == slip_board.slip_pty  # the second tty, opened as a port
        uri = target.device_server_uri(gateway.host, gateway.port)
        assert uri == f"coap://{SLIP_PEER}:{gateway.port}"  # the gateway listens on loopback; the node gets its peer
        await target.bootstrap(uri)
        registration = await gateway.wait_for_registration("node1", timeout=15)

        # The gateway's client is the bridge's host socket for the node's flow.
        bridge = target.bridge
        assert bridge is not None
        assert [flow.local for flow in bridge.flows] == [registration.address]
        assert str(bridge.flows[0].device[0]) == "192.0.2.2"

        device = await gateway.read("node1", "/3/0")
        assert device[LwPath(3, 0, 1)] == "mps2-an385"
        await target.set_sensor("temperature", 19.25)
        assert (await gateway.read("node1", "/3303/0/5700"))[LwPath(3303, 0, 5700)] == pytest.approx(19.25)
        stats = bridge.stats.copy()
        assert stats.datagrams_to_gateway >= 3 and stats.datagrams_to_device >= 3, stats.summary()
        assert stats.dropped == 0, stats.summary()

        # A reboot: sl0 up again, the bootstrap repeated, a fresh registration over the same bridge.
        async with gateway.subscribe() as events:
            await target.reboot(timeout=15)
            while (event := await events.get(timeout=15)).kind != "registered":
                pass
        assert event.endpoint == "node1"
        assert target.bridge is bridge and bridge.stats.dropped == 0
        assert (await gateway.read("node1", "/3/0/1"))[LwPath(3, 0, 1)] == "mps2-an385"

    assert target.bridge is None and target.port is None
    console = (tmp_path / "logs" / "node1.console.log").read_text()
    assert console.count("sl0 (SLIP on UART1) is up: address 192.0.2.2") == 2  # after the first boot and after the reboot
    assert console.count(f"server_add coap://{SLIP_PEER}:{gateway.port} node1") == 2
    slip_log = (tmp_path / "logs" / "node1.slip.log").read_text()
    assert f"{SLIP_PEER} -> 127.0.0.1:{gateway.port}" in slip_log and "closed:" in slip_log


@pytest.mark.slow  # each suite waits out the service's 30 s default period in real time, several times
async def test_hil_suite_on_four_bench_rigs_at_once(
    firmware_elf: Path, pty_board: QemuMachine, slip_board: QemuMachine, tmp_path: Path  # noqa: F811
) -> None:
    """tests/hil on four bench rigs at once: the reference firmware console-only over a pty, a board without a
    network, and (capability_rigs.py) the production-firmware stand-in and a lab with a stimulus."""

    async def on_slip_port() -> None:
        assert slip_board.slip_pty
        rig = tmp_path / "slip"
        rig.mkdir()
        code, out = await run_hil_suite(rig, slip_board, slip_board.pty, "--net-serial-port", slip_board.slip_pty,
                                        gateway_host=None)
        assert code == 0 and "4 passed" in out, out[-4000:]
        slip_logs = sorted((rig / "hil-logs").rglob("node1.slip.log"))
        assert len(slip_logs) == 4, slip_logs  # every test's node went through the bridge
        assert all("datagrams to gateway" in log.read_text() for log in slip_logs)

    pty_rig = tmp_path / "pty"
    pty_rig.mkdir()
    await asyncio.gather(hil_suite_over_the_pty(pty_board, pty_rig), on_slip_port(),
                         production_firmware_bench(firmware_elf, tmp_path / "production"),
                         stimulus_bench(firmware_elf, tmp_path / "stimulus"))
