"""The serial target over RFC 2217 (real protocol, real pyserial client) to a fake board.

The server is :class:`hil.infra.rfc2217.Rfc2217Server` on loopback, standing
in for ser2net or a labgrid exporter; the board behind it is the fake of
fake_serial_board.py, whose reset line is DTR.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import serial
from fake_serial_board import BANNER, FakeBoard, FakeBoardLines

from hil.boards import get_board
from hil.infra.rfc2217 import Rfc2217Server
from hil.targets.base import TargetConfig, TargetError
from hil.targets.serial import SerialTarget


def make_target(tmp_path: Path, url: str, **options) -> SerialTarget:
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board("mps2_an385"),
                          serial_port=url, gateway_host="10.0.2.2", options=options)
    return SerialTarget(config)


async def test_fake_board_reset_by_dtr_pulse_over_rfc2217(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        lines = FakeBoardLines(board, asyncio.get_running_loop())
        async with Rfc2217Server(lines) as server:
            assert server.url.startswith("rfc2217://127.0.0.1:")
            async with make_target(tmp_path, server.url, reset="dtr", reset_pulse=0.05, boot_timeout=5) as target:
                assert board.boots == 1
                assert lines.dtr_changes[-2:] == [True, False]  # asserted, then released
                assert await target.shell.exec("sensor set temperature 19.5") == ["temperature = 19.5"]
            assert server.clients_served == 1
        lines.close()
    log = (tmp_path / "logs" / "node1.console.log").read_text()
    assert BANNER.decode().strip() in log


async def test_baud_rate_is_set_on_the_remote_port(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        board.boot()
        lines = FakeBoardLines(board, asyncio.get_running_loop())
        async with Rfc2217Server(lines) as server:
            async with make_target(tmp_path, server.url, baudrate=57600, boot_timeout=5):
                assert lines.baudrate == 57600
        lines.close()


async def test_second_client_is_turned_away_while_the_place_is_in_use(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        board.boot()
        async with Rfc2217Server(board.path) as server:
            async with make_target(tmp_path / "a", server.url, boot_timeout=5):
                with pytest.raises(TargetError, match=f"cannot open serial port {server.url}"):
                    async with make_target(tmp_path / "b", server.url, boot_timeout=5):
                        pass
            assert server.clients_refused == 1
            # free again once the first client has gone
            async with make_target(tmp_path / "c", server.url, boot_timeout=5) as target:
                assert (await target.shell.exec("help"))[0] == "Available commands:"


async def test_server_owns_and_releases_a_port_given_by_path(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        async with Rfc2217Server(board.path):
            with pytest.raises(serial.SerialException, match="exclusively lock"):
                serial.Serial(board.path, exclusive=True)
        serial.Serial(board.path, exclusive=True).close()
