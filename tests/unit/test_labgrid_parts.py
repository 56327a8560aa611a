"""The labgrid integration's parts that need no lab: place selection, board file fields, configs, the bench control."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from hil.boards import BoardError, load_board_file
from hil.infra.lab import _ControlHandler, _ControlServer, control, main as lab_main
from hil.infra.labgrid import LabgridExporter
from hil.infra.process import InfraError
from hil.infra.ser2net import Ser2net

pytest.importorskip("labgrid", reason="labgrid is not installed: pip install 'embserve-hil[labgrid]'")

from hil.targets.labgrid_place import PlaceError, coordinator_address, place_patterns, select_places  # noqa: E402


def places(**aliases: list[str]) -> dict[str, SimpleNamespace]:
    return {name: SimpleNamespace(aliases=set(a)) for name, a in aliases.items()}


def test_place_patterns_take_names_patterns_and_lists() -> None:
    assert place_patterns("k64f-3") == ["k64f-3"]
    assert place_patterns("k64f-*") == ["k64f-*"]
    assert place_patterns("bench-a, bench-b") == ["bench-a", "bench-b"]
    with pytest.raises(PlaceError, match="--lg-place ' , ': no place name or pattern given"):
        place_patterns(" , ")


def test_select_places_by_name_pattern_alias_in_the_order_asked() -> None:
    lab = places(**{"k64f-1": [], "k64f-2": ["rack2"], "nrf-1": ["alice:mine"], "k64f-10": []})
    assert select_places(["k64f-*"], lab) == ["k64f-1", "k64f-10", "k64f-2"]
    assert select_places(["nrf-1", "k64f-2"], lab) == ["nrf-1", "k64f-2"]
    assert select_places(["rack2"], lab) == ["k64f-2"]  # an alias
    assert select_places(["mine"], lab) == ["nrf-1"]  # a user's namespaced alias
    assert select_places(["k64f"], lab) == []  # a name is matched whole, not as a substring
    assert select_places(["k64f-1", "k64f-?"], lab) == ["k64f-1", "k64f-2"]  # each place once


def test_coordinator_address_explicit_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    assert coordinator_address() == "127.0.0.1:20408"
    monkeypatch.setenv("LG_COORDINATOR", "lab:20408")
    assert coordinator_address() == "lab:20408"
    assert coordinator_address("other:1") == "other:1"


def test_coordinator_address_from_an_environment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    env = tmp_path / "env.yaml"
    env.write_text("targets:\n  main:\n    resources:\n      RemotePlace:\n        name: k64f-3\n"
                   "options:\n  coordinator_address: coordinator.lab:20408\n")
    assert coordinator_address(env_file=env) == "coordinator.lab:20408"


BOARD = 'name = "lab_k64f"\narch = "armv7e-m"\nbackends = ["serial"]\n'


def test_board_file_names_a_labgrid_flash_driver_or_command(tmp_path: Path) -> None:
    path = tmp_path / "lab_k64f.toml"
    path.write_text(BOARD + 'labgrid_flash = "OpenOCDDriver"\n'
                    'labgrid_flash_options = { config = ["interface/cmsis-dap.cfg", "target/kx.cfg"] }\n')
    board = load_board_file(path)
    assert board.labgrid_flash == "OpenOCDDriver"
    assert board.labgrid_flash_options == {"config": ["interface/cmsis-dap.cfg", "target/kx.cfg"]}
    path.write_text(BOARD + 'labgrid_flash_command = "ssh {host} pyocd flash -t k64f {firmware}"\n')
    assert load_board_file(path).labgrid_flash == "command"  # a command alone implies it


@pytest.mark.parametrize("text, expected", [
    ('labgrid_flash = "command"\n', "field 'labgrid_flash' is 'command' but field 'labgrid_flash_command' is missing"),
    ('labgrid_flash = " "\n', "field 'labgrid_flash' is empty"),
    ('labgrid_flash_command = "flash {image}"\n', "field 'labgrid_flash_command' uses unknown placeholder {image}"),
    ('labgrid_flash_options = "config"\n', "field 'labgrid_flash_options' must be dict, got str"),
])
def test_bad_labgrid_flash_fields_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "lab_k64f.toml"
    path.write_text(BOARD + text)
    with pytest.raises(BoardError, match=expected.replace("{", r"\{").replace("}", r"\}")):
        load_board_file(path)


def test_ser2net_config_serves_the_device_over_rfc2217_on_loopback(tmp_path: Path) -> None:
    server = Ser2net(tmp_path / "console.tty", log_dir=tmp_path, name="ser2net-bench")
    config = yaml.safe_load(server.config(4001).replace("%YAML 1.1\n", ""))
    assert config["connection"]["accepter"] == "telnet(rfc2217),tcp,127.0.0.1,4001"
    assert config["connection"]["connector"] == f"serialdev(nouucplock=true),{tmp_path / 'console.tty'},115200n81,local"
    assert config["connection"]["options"]["max-connections"] == 1


def test_exporter_writes_its_resources_as_labgrid_reads_them(tmp_path: Path) -> None:
    exporter = LabgridExporter("127.0.0.1:1", "host-a", {"bench-a": {"NetworkSerialPort": {"host": "127.0.0.1", "port": 4001}}},
                               log_dir=tmp_path)
    argv = exporter.prepare(0)
    assert argv[1:7] == ["-c", "127.0.0.1:1", "-n", "host-a", "--hostname", "127.0.0.1"]
    assert yaml.safe_load(Path(argv[-1]).read_text()) == {"bench-a": {"NetworkSerialPort": {"host": "127.0.0.1", "port": 4001}}}


def test_bench_control_answers_an_unknown_bench_and_bad_requests_with_fake_lab() -> None:
    server = _ControlServer(("127.0.0.1", 0), _ControlHandler)

    def bench(name: str) -> None:
        raise InfraError(f"no bench {name!r} in this lab; benches: bench-a")

    server.lab = SimpleNamespace(bench=bench)  # type: ignore[attr-defined]
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = "127.0.0.1:%d" % server.server_address[1]
    try:
        with pytest.raises(InfraError, match="bench-z cycle: error: no bench 'bench-z' in this lab; benches: bench-a"):
            control(address, "bench-z", "cycle")
        with socket.create_connection(server.server_address) as sock:
            sock.sendall(b"bench-a\n")
            assert sock.makefile("rb").readline() == b"error: expected: BENCH on|off|cycle, or BENCH flash FILE\n"
    finally:
        server.shutdown()
        server.server_close()
    assert lab_main([address, "bench-a", "explode"]) == 2  # usage


def test_a_bad_environment_file_is_named(tmp_path: Path) -> None:
    from hil.targets.labgrid_place import LeaseSpec, PlaceLease

    missing = tmp_path / "lab-env.yaml"
    with pytest.raises(PlaceError, match=re.escape(f"--lg-env {missing}: ")):
        PlaceLease(LeaseSpec(env_file=str(missing)))
    with pytest.raises(PlaceError, match=re.escape("a labgrid place is needed: --lg-place NAME|PATTERN|LIST or --lg-env FILE")):
        PlaceLease(LeaseSpec())
