"""Board capabilities: the board file's fields, their defaults per target, and what the target does with them.

The field tests load real board files. The target tests drive the serial
target against the fake board of fake_serial_board.py (a scripted shell on a
pty) and the LwM2M way of writing an input against a fake gateway that
records writes: which instance and type it picks, and how it refuses an
input it cannot write. The shell ways and the skips, through a real gateway
and real firmware, are tests/integration/capability_rigs.py (run by
test_serial_slip_qemu.py) and test_hil_capabilities_sim.py; the LwM2M way
meeting the simulator and the reference firmware is
tests/integration/test_lwm2m_service_inputs.py.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_child_pytest
from fake_serial_board import FakeBoard

from hil.boards import DEFAULT_SERVICE_INPUT_COMMAND, BoardError, load_board_file
from hil.lwm2m import Path as LwPath
from hil.readings import check_real_sensor
from hil.service.manifest import IOSpec, Manifest
from hil.service.sdk_api import ValueType
from hil.targets.base import CapabilityMissing, TargetConfig, TargetError, get_target_class

BASE = 'name = "b"\narch = "armv7-m"\nbackends = ["serial", "sim"]\n'


def board_file(tmp_path: Path, extra: str = "", name: str = "b") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(BASE.replace('"b"', f'"{name}"') + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('inject = "temperature"\n', "field 'inject' must be list, got str 'temperature'"),
        ("inject = [3]\n", "field 'inject' must list sensor names, got 3"),
        ('inject = ["temprature"]\n', "field 'inject' names 'temprature', which is not one of the board's sensors (temperature"),
        ('sensors = ["humidity"]\ninject = ["temperature"]\n', "field 'inject' names 'temperature'"),
        ('service_input = "uart"\n', "field 'service_input' is 'uart'; must be one of shell, lwm2m, none"),
        ("service_input = true\n", "field 'service_input' must be str, got bool"),
        ('service_input_command = "svc {id} {key}"\n', "field 'service_input_command' uses unknown placeholder {id}"),
        ('service_input_command = " "\n', "field 'service_input_command' is empty"),
        ("temperature_range = [85, -40]\n", "field 'temperature_range' must be [low, high] in °C with low < high, got [85, -40]"),
        ("temperature_range = [-40]\n", "field 'temperature_range' must be [low, high]"),
        ('temperature_range = ["cold", "hot"]\n', "field 'temperature_range' must be [low, high]"),
        ("temperature_range = -40\n", "field 'temperature_range' must be list, got int"),
        ('constant_sensors = ["pressure"]\n', "field 'constant_sensors' names 'pressure', which is not one of the board's sensors"),
        ('stimulus = "chamber-cli set {value}"\n', "field 'stimulus' must be dict, got str"),
        ('stimulus.humidity = "chamber-cli rh {value}"\n', "field 'stimulus.humidity' is for 'humidity', which is not one of"),
        ("stimulus.temperature = 25\n", "field 'stimulus.temperature' must be a command (string), got int 25"),
        ('stimulus.temperature = "chamber-cli set {celsius}"\n', "field 'stimulus.temperature' uses unknown placeholder {celsius}; known: {value}, {sensor}, {board}"),
        ('stimulus.temperature = ""\n', "field 'stimulus.temperature' is empty"),
        ("stimulus_settle = -1\n", "field 'stimulus_settle' must not be negative"),
        ('stimulus_tolerance = "0.5"\n', "field 'stimulus_tolerance' must be number, got str"),
        ("injection = []\n", "unknown field 'injection'"),
    ],
)
def test_bad_capability_field_is_one_line_naming_file_and_field(tmp_path: Path, extra: str, expected: str) -> None:
    path = board_file(tmp_path, extra)
    with pytest.raises(BoardError) as info:
        load_board_file(path)
    message = str(info.value)
    assert message.startswith(f"board file {path}: ") and "\n" not in message
    assert expected in message


def test_capability_fields_load_in_both_forms(tmp_path: Path) -> None:
    flat = load_board_file(board_file(tmp_path, 'inject = []\nservice_input = "lwm2m"\ntemperature_range = [0, 60.5]\n'
                                      'constant_sensors = ["temperature"]\nstimulus_settle = 30\n'
                                      'stimulus.temperature = "chamber-cli --board {board} set {value}"\n'))
    assert flat.inject == () and flat.service_input == "lwm2m"
    assert flat.temperature_range == (0.0, 60.5) and flat.constant_sensors == ("temperature",)
    assert flat.stimulus == {"temperature": "chamber-cli --board {board} set {value}"}
    assert flat.stimulus_settle == 30.0 and isinstance(flat.stimulus_settle, float)
    table = tmp_path / "t.toml"
    table.write_text('[board]\nname = "t"\narch = "armv7-m"\nbackends = ["serial"]\n'
                     'service_input_command = "svc write {instance} {key}={value}"\n'
                     '[board.stimulus]\ntemperature = "chamber-cli set {value}"\n')
    board = load_board_file(table)
    assert board.service_input_command == "svc write {instance} {key}={value}"
    assert board.stimulus == {"temperature": "chamber-cli set {value}"}
    assert board.inject is None and board.temperature_range == (-40.0, 85.0)


@pytest.mark.parametrize(("target", "inject", "service_input"), [
    ("sim", {"temperature"}, "shell"),
    ("qemu", {"temperature"}, "shell"),
    ("renode", {"temperature"}, "shell"),
    ("serial", set(), "none"),  # production firmware, unless the board file says otherwise
])
def test_defaults_are_what_the_target_can_do(tmp_path: Path, target: str, inject: set[str], service_input: str) -> None:
    board = load_board_file(board_file(tmp_path))
    config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=board)
    node = get_target_class(target)(config)
    assert node.capabilities.inject == inject and node.capabilities.service_input == service_input
    assert node.capabilities.service_input_command == DEFAULT_SERVICE_INPUT_COMMAND
    assert node.can_set_sensor("temperature") == bool(inject)


def test_board_file_overrides_the_target_defaults(tmp_path: Path) -> None:
    declared = load_board_file(board_file(tmp_path, 'inject = ["temperature"]\nservice_input = "shell"\n'))
    assert declared.capabilities(reference_shell=False).inject == {"temperature"}
    silent = load_board_file(board_file(tmp_path, 'inject = []\nservice_input = "none"\n', name="c"))
    caps = silent.capabilities(reference_shell=True)
    assert caps.inject == set() and caps.service_input == "none" and not caps.can_set("temperature")
    chamber = load_board_file(board_file(tmp_path, 'stimulus.temperature = "chamber-cli set {value}"\n', name="d"))
    assert chamber.capabilities(reference_shell=False).can_set("temperature")


def serial_target(tmp_path: Path, port: str, extra: str):
    board = load_board_file(board_file(tmp_path, extra))
    return get_target_class("serial")(TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=board,
                                                   serial_port=port, gateway_host="192.0.2.7"))


async def test_board_without_injection_or_inputs_refuses_with_the_reason(tmp_path: Path) -> None:
    async with FakeBoard() as fake, serial_target(tmp_path, fake.path, "") as target:
        with pytest.raises(CapabilityMissing) as info:
            await target.set_sensor("temperature", 21.5)
        assert "board b cannot set sensor 'temperature'" in str(info.value)
        assert "field 'inject'" in str(info.value) and "stimulus.temperature" in str(info.value)
        with pytest.raises(CapabilityMissing, match="board b has no way to write service inputs .*'none'"):
            await target.set_service_input(1000, "rate", 2000)
        assert not fake.commands, "nothing may be typed into a production firmware's shell"


async def test_declared_shell_ways_type_the_board_commands(tmp_path: Path) -> None:
    extra = 'inject = ["temperature"]\nservice_input = "shell"\nservice_input_command = "svc {instance} set {key} {value}"\n'
    async with FakeBoard() as fake, serial_target(tmp_path, fake.path, extra) as target:
        await target.set_sensor("temperature", 21.5)
        await target.set_service_input(1000, "rate", 2000)
    assert fake.commands == ["sensor set temperature 21.5", "svc 1000 set rate 2000"]


async def test_stimulus_command_runs_on_the_host_instead_of_sensor_set(tmp_path: Path) -> None:
    chamber = tmp_path / "chamber.txt"
    script = f"import sys; open({str(chamber)!r}, 'a').write(' '.join(sys.argv[1:]) + chr(10))"
    command = shlex.join([sys.executable, "-c", script]) + " {board} {sensor} {value}"
    extra = f'inject = ["temperature"]\nstimulus.temperature = {json.dumps(command)}\nstimulus_tolerance = 0.25\n'
    async with FakeBoard() as fake, serial_target(tmp_path, fake.path, extra) as target:
        await target.set_sensor("temperature", 26.5)
        assert target.sensor_tolerance("temperature") == 0.25
    assert chamber.read_text() == "b temperature 26.5\n"
    assert not fake.commands  # the stimulus replaces `sensor set`
    assert "stimulus-temperature:" in (tmp_path / "logs" / "node1.stimulus-temperature.log").read_text()


async def test_failing_stimulus_names_the_command_and_its_output(tmp_path: Path) -> None:
    command = shlex.join([sys.executable, "-c", "import sys; print('chamber offline'); sys.exit(3)"])
    async with FakeBoard() as fake, serial_target(tmp_path, fake.path, f"stimulus.temperature = {json.dumps(command)}\n") as target:
        with pytest.raises(TargetError) as info:
            await target.set_sensor("temperature", 30.0)
    assert "stimulus-temperature command exited with code 3" in str(info.value)
    assert "chamber offline" in str(info.value)


class FakeGateway:
    """Records writes; knows the instances the node registered (a fake: the real gateway is elsewhere)."""

    def __init__(self, instances: dict[int, list[int]]):
        self.writes: list[tuple[str, LwPath, object]] = []
        self._registration = SimpleNamespace(available_instances=instances)

    def registration(self, endpoint: str) -> SimpleNamespace:
        return self._registration

    async def write(self, endpoint: str, path: LwPath, value: object, *, timeout: float | None = None) -> None:
        self.writes.append((endpoint, path, value))


def manifest_with(rate: IOSpec) -> Manifest:
    return Manifest(name="temperature_sensor", version=1, service=b"", sdk_api=1, inputs=(rate,))


async def test_lwm2m_input_is_written_to_its_mapped_resource_with_fake_gateway(tmp_path: Path) -> None:
    target = get_target_class("sim")(TargetConfig(endpoint="node1", log_dir=tmp_path / "logs",
                                                  board=load_board_file(board_file(tmp_path, 'service_input = "lwm2m"\n'))))
    gateway = FakeGateway({3303: [0], 3340: [2, 5]})
    mapped = manifest_with(IOSpec("rate", ValueType.INT, ("lwm2m:3340/x/5521",)))
    assert await target.set_service_input(1000, "rate", 2000.0, manifest=mapped, gateway=gateway) == []
    assert gateway.writes == [("node1", LwPath(3340, 2, 5521), 2000)]
    assert isinstance(gateway.writes[0][2], int)  # the input's declared type

    unmapped = manifest_with(IOSpec("rate", ValueType.INT, ()))
    with pytest.raises(CapabilityMissing, match="maps input 'rate' to no resource"):
        await target.set_service_input(1000, "rate", 2000, manifest=unmapped, gateway=gateway)
    with pytest.raises(TargetError, match="declares no input 'period'"):
        await target.set_service_input(1000, "period", 2000, manifest=mapped, gateway=gateway)
    with pytest.raises(TargetError, match="registers no /3340 instance"):
        await target.set_service_input(1000, "rate", 2000, manifest=mapped, gateway=FakeGateway({3303: [0]}))


@pytest.mark.parametrize(("values", "constant", "problem"), [
    ([21.5, 21.5, 21.5], False, "all 3 readings are 21.5"),
    ([21.5, 121.0, 21.6], False, "[121.0] outside the plausible range [-40, 85]"),
    ([-41.0], True, "outside the plausible range"),
])
def test_real_sensor_check_catches_stuck_and_implausible_readings(values, constant: bool, problem: str) -> None:
    with pytest.raises(AssertionError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        check_real_sensor(values, plausible=(-40.0, 85.0), constant=constant, what="node1 temperature readings")


@pytest.mark.parametrize(("values", "constant"), [([21.5, 21.52, 21.49], False), ([22.5, 22.5, 22.5], True), ([84.9], False)])
def test_real_sensor_check_accepts_what_a_sensor_can_show(values, constant: bool) -> None:
    check_real_sensor(values, plausible=(-40.0, 85.0), constant=constant, what="node1 temperature readings")


def test_board_file_examples_in_the_docs_load(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "boards.md"
    examples = re.findall(r"```toml\n(.*?)```", docs.read_text(), re.S)
    assert len(examples) >= 4
    for number, text in enumerate(examples):
        name = re.search(r'^name = "(\w+)"', text, re.M).group(1)  # type: ignore[union-attr]
        path = tmp_path / str(number) / f"{name}.toml"
        path.parent.mkdir()
        path.write_text(text)
        load_board_file(path)


MISSING_CAPABILITY_TESTS = '''
import pytest
from hil.targets import CapabilityMissing

@pytest.fixture
def chamber():
    raise CapabilityMissing("board lab has no chamber")

def test_in_a_fixture(chamber):
    pass

def test_in_the_test():
    raise CapabilityMissing("board lab has no way to write service inputs")

@pytest.mark.hil
async def test_in_an_async_hil_test():
    raise CapabilityMissing("board lab cannot set sensor 'temperature'")
'''


async def test_plugin_skips_a_test_needing_what_the_board_lacks(tmp_path: Path) -> None:
    (tmp_path / "test_lab.py").write_text(MISSING_CAPABILITY_TESTS)
    code, out = await run_child_pytest([str(tmp_path / "test_lab.py"), "-q", "-rs", "-p", "no:cacheprovider"],
                                       timeout=60)
    assert code == 0 and out.strip().splitlines()[-1].startswith("3 skipped"), out
    for reason in ("board lab has no chamber", "board lab has no way to write service inputs",
                   "board lab cannot set sensor 'temperature'"):
        assert re.search(rf"^SKIPPED \[1\] \S*test_lab.py:\d+: {re.escape(reason)}$", out, re.M), out
