"""The serial target against a fake board on a real pseudo-terminal (see fake_serial_board.py)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import serial
from fake_serial_board import BANNER, FakeBoard

from hil.boards import get_board
from hil.targets.base import TargetConfig, TargetError, get_target_class
from hil.targets.serial import BootWatch, SerialTarget


def make_target(tmp_path: Path, port: str | None, *, gateway_host: str | None = None, firmware: Path | None = None,
                **options) -> SerialTarget:
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board("mps2_an385"),
                          serial_port=port, gateway_host=gateway_host, firmware=firmware, options=options)
    target = get_target_class("serial")(config)
    assert isinstance(target, SerialTarget)
    return target


def console_log(tmp_path: Path) -> str:
    return (tmp_path / "logs" / "node1.console.log").read_text()


# -- bring-up ------------------------------------------------------------------


async def test_fake_board_already_running_is_found_by_its_prompt(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        board.boot()  # printed before anyone attached: lost, as on a real port
        async with make_target(tmp_path, board.path, gateway_host="192.0.2.7", boot_timeout=5) as target:
            assert await target.shell.exec("help") == [
                "Available commands:", "  embserve :embServe commands", "  sensor   :Sensor commands"]
            uri = target.device_server_uri("127.0.0.1", 5683)
            assert uri == "coap://192.0.2.7:5683"
            await target.bootstrap(uri)
            await target.set_sensor("temperature", 21.5)
        assert "embserve connector lwm2m server_add coap://192.0.2.7:5683 node1" in board.commands
        assert "sensor set temperature 21.5" in board.commands
        assert "LwM2M server coap://192.0.2.7:5683 added, endpoint node1" in console_log(tmp_path)


async def test_fake_board_reset_command_boot_output_is_not_lost(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        command = board.reset_command + " && echo reset {board} on {port}"
        async with make_target(tmp_path, board.path, reset_command=command, boot_timeout=5):
            assert board.boots == 1
        log = console_log(tmp_path)
        assert BANNER.decode().strip() in log and "sensors ready" in log
        assert not board.commands, "a reset board must not be poked with newlines"
        reset_log = (tmp_path / "logs" / "node1.reset.log").read_text()
        assert f"reset mps2_an385 on {board.path}" in reset_log


async def test_fake_board_flash_command_gets_the_firmware_path(tmp_path: Path) -> None:
    firmware = tmp_path / "my fw.elf"
    firmware.write_bytes(b"\x7fELF")
    record = tmp_path / "flashed.txt"
    script = f"import sys; open({str(record)!r}, 'w').write(sys.argv[1])"
    flash = f"{shlex.join([sys.executable, '-c', script])} {{firmware}}"
    async with FakeBoard() as board:
        # a flash tool resets the board when it is done
        flash += f" && {board.reset_command}"
        async with make_target(tmp_path, board.path, firmware=firmware, flash=flash, boot_timeout=5):
            pass
        assert record.read_text() == str(firmware)
        assert board.boots == 1
        assert BANNER.decode().strip() in console_log(tmp_path)


async def test_fake_board_without_firmware_is_not_flashed(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        board.boot()
        async with make_target(tmp_path, board.path, flash="false {firmware}", boot_timeout=5):
            pass
        assert not (tmp_path / "logs" / "node1.flash.log").exists()


async def test_failing_flash_shows_its_output_and_log(tmp_path: Path) -> None:
    firmware = tmp_path / "fw.elf"
    firmware.write_bytes(b"\x7fELF")
    flash = "echo 'No connected debug probe found' >&2; exit 3"
    async with FakeBoard() as board:
        target = make_target(tmp_path, board.path, firmware=firmware, flash=flash)
        with pytest.raises(TargetError) as info:
            async with target:
                pass
    message = str(info.value)
    assert "flash command exited with code 3" in message
    assert "No connected debug probe found" in message
    assert str(tmp_path / "logs" / "node1.flash.log") in message


async def test_flash_with_missing_firmware_is_named(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        with pytest.raises(TargetError, match="firmware .*nope.elf does not exist"):
            async with make_target(tmp_path, board.path, firmware=tmp_path / "nope.elf", flash="true {firmware}"):
                pass


# -- bad input -----------------------------------------------------------------


async def test_silent_fake_board_times_out_naming_what_was_seen(tmp_path: Path) -> None:
    async with FakeBoard(mode="silent") as board:
        with pytest.raises(TargetError) as info:
            async with make_target(tmp_path, board.path, reset_command=board.reset_command, boot_timeout=0.5):
                pass
    message = str(info.value)
    assert f"board on {board.path} printed nothing at all within 0.5 s after the reset command" in message
    assert "<nothing received>" in message
    assert str(tmp_path / "logs" / "node1.console.log") in message


async def test_fake_board_without_prompt_shows_last_console_lines(tmp_path: Path) -> None:
    async with FakeBoard(mode="chatty") as board:
        with pytest.raises(TargetError) as info:
            async with make_target(tmp_path, board.path, reset_command=board.reset_command, boot_timeout=0.5):
                pass
    message = str(info.value)
    assert "but no prompt 'uart:~$ '" in message
    assert "| waiting for something" in message


async def test_wrong_baud_rate_is_named(tmp_path: Path) -> None:
    async with FakeBoard(mode="garbage") as board:
        with pytest.raises(TargetError) as info:
            async with make_target(tmp_path, board.path, reset_command=board.reset_command, boot_timeout=5):
                pass
    assert "console output looks like the wrong baud rate (115200?)" in str(info.value)


async def test_missing_port_is_named_with_the_ports_there_are(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as info:
        async with make_target(tmp_path, "/dev/ttyEMBSERVE-missing"):
            pass
    assert "serial port /dev/ttyEMBSERVE-missing does not exist" in str(info.value)
    assert "serial ports on this machine:" in str(info.value)


async def test_busy_port_is_named(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        holder = serial.Serial(board.path, exclusive=True)  # e.g. a terminal program left open
        try:
            with pytest.raises(TargetError, match=f"serial port {board.path} is busy"):
                async with make_target(tmp_path, board.path):
                    pass
        finally:
            holder.close()


async def test_unreachable_rfc2217_port_is_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"rfc2217://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(TargetError, match=f"cannot reach {url}: connection refused"):
        async with make_target(tmp_path, url):
            pass


async def test_no_port_given_asks_for_serial_port(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="needs --serial-port"):
        async with make_target(tmp_path, None):
            pass


async def test_dtr_reset_on_a_pty_explains_the_missing_lines(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        with pytest.raises(TargetError, match="cannot reset by DTR .* no modem control lines"):
            async with make_target(tmp_path, board.path, reset="dtr"):
                pass


async def test_port_is_released_after_stop_and_after_failed_start(tmp_path: Path) -> None:
    async with FakeBoard(mode="silent") as board:
        with pytest.raises(TargetError):
            async with make_target(tmp_path, board.path, boot_timeout=0.3):
                pass
        board.mode = "shell"
        target = make_target(tmp_path, board.path, boot_timeout=5)
        async with target:
            pass
        await target.stop()  # twice is fine
        serial.Serial(board.path, exclusive=True).close()  # nobody holds it any more


async def test_board_going_away_is_reported_on_the_next_command(tmp_path: Path) -> None:
    async with FakeBoard() as board:
        async with make_target(tmp_path, board.path, boot_timeout=5) as target:
            board.hang_up()
            with pytest.raises(TargetError, match=f"serial port {board.path} went away"):
                for _ in range(100):  # the reader notices within its read timeout
                    await target.shell.exec("help", timeout=0.5)


def test_gateway_on_loopback_needs_gateway_host(tmp_path: Path) -> None:
    target = make_target(tmp_path, "/dev/null")
    with pytest.raises(TargetError, match="pass --gateway-host"):
        target.device_server_uri("127.0.0.1", 5683)
    with pytest.raises(TargetError, match="pass --gateway-host"):
        target.device_server_uri("0.0.0.0", 5683)
    assert target.device_server_uri("192.0.2.1", 5683) == "coap://192.0.2.1:5683"


def test_board_settings_and_option_overrides(tmp_path: Path) -> None:
    config = TargetConfig(endpoint="n", log_dir=tmp_path, board=get_board("nrf52840dk"), serial_port="/dev/ttyACM0",
                          options={"baudrate": 921600})
    target = SerialTarget(config)
    assert target.settings["reset"] == "command"
    assert target.settings["reset_command"].startswith("nrfjprog")
    assert target.settings["baudrate"] == 921600
    assert "921600 baud" in target.describe()
    with pytest.raises(TargetError, match="reset 'jtag'"):
        SerialTarget(TargetConfig(endpoint="n", log_dir=tmp_path, options={"reset": "jtag"}))


# -- boot detection --------------------------------------------------------------


def test_bootwatch_sees_the_prompt_at_a_line_end_only() -> None:
    watch = BootWatch("uart:~$ ")
    watch.feed(b"*** Booting ***\r\nuart:~$ help\r\n")
    assert not watch.prompt_seen  # a prompt followed by an echoed command is not a fresh prompt
    watch.feed(b"\x1b[1;32muart:~$ \x1b[m")
    assert watch.prompt_seen
    watch.restart()
    assert not watch.prompt_seen and watch.received == 0


def test_bootwatch_flags_garbage_but_not_text() -> None:
    text = BootWatch("uart:~$ ")
    text.feed("Temperature: 21.5 °C\r\n\x1b[0m\tok\r\n".encode() * 4)
    assert not text.garbled
    noise = BootWatch("uart:~$ ")
    noise.feed(bytes([0xF8, 0x00, 0x80, 0xFE, 0x1C, 0x06]) * 3)
    assert not noise.garbled  # too little to judge
    noise.feed(bytes([0xF8, 0x00, 0x80, 0xFE, 0x1C, 0x06]) * 3)
    assert noise.garbled
