"""QEMU command line for a SLIP line on UART1 (no QEMU process needed)."""

from __future__ import annotations

from pathlib import Path

from hil.infra.qemu import QemuMachine, qemu_arguments


def option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_slip_port_puts_uart1_on_a_second_nodelay_socket_that_does_not_wait() -> None:
    args = qemu_arguments(Path("f.elf"), 4321, nic=None, slip_port=4322)
    assert option(args, "-chardev") == [
        "socket,id=slip,host=127.0.0.1,port=4322,server=on,wait=off,nodelay=on",
        "socket,id=console,host=127.0.0.1,port=4321,server=on,wait=on,nodelay=on",
    ], "the SLIP socket must be listening before QEMU blocks waiting for the console"
    assert option(args, "-serial") == ["chardev:console", "chardev:slip"]  # UART0, then UART1
    assert option(args, "-nic") == ["none"]


def test_without_slip_there_is_one_serial_port() -> None:
    args = qemu_arguments(Path("f.elf"), 4321)
    assert option(args, "-serial") == ["chardev:console"]
    assert not any("id=slip" in a for a in option(args, "-chardev"))


def test_slip_streams_exist_only_once_started_and_repr_names_the_line(tmp_path: Path) -> None:
    machine = QemuMachine(tmp_path / "f.elf", log_dir=tmp_path, nic=None, slip=True)
    assert machine.slip and machine.slip_socket is None and machine.slip_reader is None
    assert " slip 127.0.0.1:" in repr(machine)
    assert " slip " not in repr(QemuMachine(tmp_path / "f.elf", log_dir=tmp_path))
