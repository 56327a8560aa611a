"""QEMU command line and start-up errors of hil.infra.qemu (no QEMU process needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.infra.process import InfraError, MissingBinaryError
from hil.infra.qemu import QemuMachine, qemu_arguments


def option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_default_arguments_put_the_console_on_a_waiting_nodelay_socket() -> None:
    args = qemu_arguments(Path("/fw/embserve.elf"), 4321)
    assert option(args, "-M") == ["mps2-an385"]
    assert option(args, "-kernel") == ["/fw/embserve.elf"]
    assert option(args, "-chardev") == ["socket,id=console,host=127.0.0.1,port=4321,server=on,wait=on,nodelay=on"]
    assert option(args, "-serial") == ["chardev:console"]
    assert option(args, "-nic") == ["user,model=lan9118"]
    assert option(args, "-display") == ["none"] and option(args, "-monitor") == ["none"]
    assert "-no-reboot" in args
    assert option(args, "-semihosting-config") == ["enable=on,target=native"]
    assert "-icount" not in args


def test_network_choices_and_icount_and_extra_args() -> None:
    assert option(qemu_arguments(Path("f.elf"), 1, nic=None), "-nic") == ["none"]
    custom = "user,model=lan9118,hostfwd=udp:127.0.0.1:5000-:5683"
    assert option(qemu_arguments(Path("f.elf"), 1, nic=custom), "-nic") == [custom]
    args = qemu_arguments(Path("f.elf"), 1, icount="shift=auto,sleep=off", extra_args=["-serial", "null"])
    assert option(args, "-icount") == ["shift=auto,sleep=off"]
    assert args[-2:] == ["-serial", "null"]


def test_unknown_nic_shorthand_is_rejected_with_the_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nic='e1000'"):
        QemuMachine(tmp_path / "f.elf", log_dir=tmp_path, nic="e1000")


def test_missing_qemu_binary_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elf = tmp_path / "embserve.elf"
    elf.write_bytes(b"\x7fELF")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    machine = QemuMachine(elf, log_dir=tmp_path)
    monkeypatch.setattr(machine, "binary_candidates", ())
    with pytest.raises(MissingBinaryError, match="apt-get install qemu-system-arm"):
        machine.start()
    assert machine.pid is None


def test_missing_firmware_names_the_file_and_the_build_command(tmp_path: Path) -> None:
    machine = QemuMachine(tmp_path / "nowhere.elf", log_dir=tmp_path)
    with pytest.raises(InfraError, match=r"nowhere\.elf does not exist \(build it with: make -C firmware\)"):
        machine.start()
    assert machine.pid is None


def test_a_nic_on_a_tap_the_target_is_handed(tmp_path: Path) -> None:
    """QEMU gets the TAP as an inherited descriptor (a fleet opens it inside its namespace)."""
    from hil.boards import get_board
    from hil.targets.base import TargetConfig
    from hil.targets.errors import TargetError
    from hil.targets.qemu import QemuTarget

    config = TargetConfig(endpoint="n1", log_dir=tmp_path, board=get_board("mps2_an385"),
                          options={"net": "tap", "tap_fd": 7, "mac": "52:54:00:00:00:01", "ipv4": ("10.0.0.2/24", "10.0.0.1")})
    target = QemuTarget(config)
    assert target._nic() == "tap,fd=7,model=lan9118,mac=52:54:00:00:00:01"
    # the gateway's address is the node's network's, not rewritten to user networking's 10.0.2.2
    assert target.device_server_uri("127.0.0.1", 5683) == "coap://127.0.0.1:5683"
    machine = QemuMachine(tmp_path / "fw.elf", log_dir=tmp_path, nic=target._nic(), pass_fds=(7,))
    assert machine.pass_fds == (7,)
    with pytest.raises(TargetError, match="net 'tap' needs the TAP device's descriptor"):
        QemuTarget(TargetConfig(endpoint="n2", log_dir=tmp_path, options={"net": "tap"}))
