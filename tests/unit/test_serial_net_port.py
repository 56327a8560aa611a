"""The serial target's SLIP port (--net-serial-port): addressing and what goes wrong, against a fake board.

The fake board (fake_serial_board.py) has a shell but no SLIP interface; the
SLIP port is a second pseudo-terminal nobody answers on. The real thing, the
reference firmware on QEMU with UART1 on a second pty, is
tests/integration/test_serial_slip_qemu.py.
"""

from __future__ import annotations

import contextlib
import os
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_serial_board import FakeBoard

from hil.boards import get_board
from hil.targets.base import TargetConfig, TargetError
from hil.targets.serial import SerialTarget


@pytest.fixture
def spare_pty() -> Iterator[str]:
    """A second tty device node, standing in for the board's second USB-serial adapter."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def make_target(tmp_path: Path, port: str | None, net_port: str | None, *, gateway_host: str | None = None,
                **options) -> SerialTarget:
    return SerialTarget(TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board("mps2_an385"),
                                     serial_port=port, net_serial_port=net_port, gateway_host=gateway_host,
                                     options=options))


def test_with_a_slip_port_the_node_is_told_the_slip_peer(tmp_path: Path) -> None:
    target = make_target(tmp_path, "/dev/ttyACM0", "/dev/ttyACM1")
    # A gateway on this machine's loopback is fine: the bridge on this machine relays to it.
    assert target.device_server_uri("127.0.0.1", 5683) == "coap://192.0.2.1:5683"
    assert target.uplink is not None and target.uplink.gateway == ("127.0.0.1", 5683)
    assert "network over SLIP on /dev/ttyACM1 at 115200 baud" in target.describe()
    other = make_target(tmp_path, "/dev/ttyACM0", "/dev/ttyACM1", gateway_host="192.0.2.9", net_baudrate=57600)
    assert other.device_server_uri("127.0.0.1", 5690) == "coap://192.0.2.9:5690"
    assert "at 57600 baud, endpoint" in other.describe()
    with pytest.raises(TargetError, match="cannot reach a gateway listening on 127.0.0.1"):
        make_target(tmp_path, "/dev/ttyACM0", None).device_server_uri("127.0.0.1", 5683)
    with pytest.raises(TargetError, match="net_baudrate 'fast': expected a positive whole number of baud"):
        make_target(tmp_path, "/dev/ttyACM0", "/dev/ttyACM1", net_baudrate="fast")


async def test_slip_port_equal_to_the_console_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="--net-serial-port /dev/ttyACM0 is the console's port"):
        async with make_target(tmp_path, "/dev/ttyACM0", "/dev/ttyACM0"):
            pass


async def test_missing_slip_port_is_named_and_the_console_closed(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        target = make_target(tmp_path, board.path, "/dev/does-not-exist-slip", boot_timeout=5,
                             reset_command=board.reset_command)
        with pytest.raises(TargetError) as info:
            async with target:
                pass
        assert "SLIP line (--net-serial-port): serial port /dev/does-not-exist-slip does not exist" in str(info.value)
        assert target.port is None and target.uplink is not None and target.uplink.link is None
        assert board.boots == 0, "the board must not be reset when its SLIP port cannot be opened"


async def test_firmware_without_a_slip_interface_is_reported_in_its_words(tmp_path: Path, spare_pty: str) -> None:
    async with FakeBoard() as board:
        board.boot()
        target = make_target(tmp_path, board.path, spare_pty, boot_timeout=5)
        with pytest.raises(TargetError) as info:
            async with target:
                pass
        assert "'net iface slip' did not bring sl0 up; the node said:\nnet: command not found" in str(info.value)
        assert "net iface slip" in board.commands
        assert target.port is None and target.uplink is not None and target.uplink.link is None  # both ports closed
