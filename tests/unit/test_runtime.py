"""Service runtime: the temperature service (FITA's binary and ours) in virtual time,
inputs, deactivation, several services per node, and fault isolation."""

from __future__ import annotations

import asyncio
import shutil
import struct

import pytest
from conftest import FITA_SERVICE, REPO

from hil.device.clock import VirtualClock
from hil.service.cpu import DEFAULT_POOL, Machine
from hil.service.runtime import (
    ServiceInputError,
    ServiceLoadError,
    ServiceRuntime,
    ServiceState,
    ServiceStateError,
)
from hil.service.manifest import Manifest, parse_manifest
from hil.sdk import build_service

ROOT = REPO
TEST_SERVICES = ROOT / "tests" / "data" / "services"
TEMPERATURE = 3  # SDK sensor type

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("services")
    cache: dict[str, Manifest] = {}

    def manifest(name: str) -> Manifest:
        if shutil.which("arm-none-eabi-gcc") is None:
            pytest.skip("needs gcc-arm-none-eabi to build test services")
        if name not in cache:
            src = ROOT / "services" / name if name == "temperature_sensor" else TEST_SERVICES / name
            cache[name] = parse_manifest(build_service(src, out / name).read_bytes())
        return cache[name]

    return manifest


def fita_manifest() -> Manifest:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA artifacts not available at {FITA_SERVICE}")
    return parse_manifest(FITA_SERVICE.read_bytes())


@pytest.fixture(params=["fita", "ours"])
def temperature(request, build) -> Manifest:
    return fita_manifest() if request.param == "fita" else build("temperature_sensor")


class Node:
    """Records what the runtime reports, with the virtual time it happened at."""

    def __init__(self, clock: VirtualClock, machine: Machine | None = None):
        self.clock = clock
        self.temperature: float | None = 21.5
        self.console: list[tuple[float, str, str]] = []
        self.outputs: list[tuple[float, str, str, int, object]] = []
        self.faults: list[tuple[str, str]] = []
        self.runtime = ServiceRuntime(
            "node1",
            clock,
            console=lambda name, line: self.console.append((clock.now(), name, line)),
            sensors=lambda kind: self.temperature if kind == TEMPERATURE else None,
            on_output=lambda service, key, type_, value: self.outputs.append((clock.now(), service.name, key, type_, value)),
            on_fault=lambda service, message: self.faults.append((service.name, message)),
            machine=machine,
        )

    def lines(self, name: str | None = None) -> list[str]:
        return [line for _, n, line in self.console if name is None or n == name]

    def output_times(self, name: str, key: str) -> list[float]:
        return [t for t, n, k, _, _ in self.outputs if n == name and k == key]

    def output_values(self, name: str, key: str) -> list[object]:
        return [v for _, n, k, _, v in self.outputs if n == name and k == key]


@pytest.fixture
def node():
    node = Node(VirtualClock(realtime=False))
    yield node
    node.runtime.close()


def f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


async def test_temperature_outputs_injected_values_every_30_s(node, temperature):
    service = node.runtime.load(temperature, 1000)
    readings = [21.5, 22.25, -4.5, 19.3]
    node.temperature = readings[0]
    service.activate()
    for value in readings[1:]:
        node.temperature = value
        await node.clock.advance(30)
    assert service.state is ServiceState.RUNNING
    assert node.output_times("temperature_sensor", "value") == [0.0, 30.0, 60.0, 90.0]
    assert node.output_values("temperature_sensor", "value") == [f32(v) for v in readings]
    assert all(type_ == 1 for *_, type_, _ in node.outputs)
    assert node.lines() == ["temperature_sensor started!", "Loop"]
    assert node.faults == []


async def run_scenario(manifest: Manifest) -> list[tuple]:
    node = Node(VirtualClock(realtime=False))
    try:
        service = node.runtime.load(manifest, 1000)
        service.activate()
        await node.clock.advance(65)
        node.temperature = 22.25
        service.input("rate", 5000)
        service.input("rate", 500)
        await node.clock.advance(20)
        service.deactivate()
        await node.clock.advance(60)
        node.temperature = None
        service.activate()
        await node.clock.advance(60)
        return [*node.console, *node.outputs, ("state", service.state.value, service.stats.error)]
    finally:
        node.runtime.close()


async def test_fita_and_our_build_behave_identically(build):
    fita = await run_scenario(fita_manifest())
    ours = await run_scenario(build("temperature_sensor"))
    assert ours == fita
    lines = [entry[2] for entry in fita if len(entry) == 3 and isinstance(entry[0], float)]
    assert lines == [
        "temperature_sensor started!",
        "Loop",
        "on_input(): (rate,0,1)",
        "on_input(): New rate 5000 ms",
        "on_input(): (rate,0,1)",
        "on_input(): Bad input. Rate too low (500)",
        "temperature_sensor started!",
        "Loop",
        "Failed to get sensor!",
    ]


async def test_rate_input_changes_the_period(node, temperature):
    service = node.runtime.load(temperature, 1000)
    service.activate()
    await node.clock.advance(1)
    service.input("rate", 5000)
    assert node.lines()[-2:] == ["on_input(): (rate,0,1)", "on_input(): New rate 5000 ms"]
    await node.clock.advance(49)
    # the sleep in progress still ends at 30 s; then every 5 s
    assert node.output_times("temperature_sensor", "value") == [0.0, 30.0, 35.0, 40.0, 45.0, 50.0]


async def test_rate_below_1000_is_refused_with_a_message(node, temperature):
    service = node.runtime.load(temperature, 1000)
    service.activate()
    service.input("rate", 500)
    assert node.lines()[-1] == "on_input(): Bad input. Rate too low (500)"
    await node.clock.advance(60)
    assert node.output_times("temperature_sensor", "value") == [0.0, 30.0, 60.0]


async def test_deactivate_stops_output_and_activate_restarts(node, temperature):
    service = node.runtime.load(temperature, 1000)
    service.activate()
    await node.clock.advance(60)
    service.deactivate()
    assert service.state is ServiceState.STOPPED
    assert service.stats.error == "" and service.stats.uptime == 0.0
    assert node.clock.pending == 0  # its wake-up timer is gone
    await node.clock.advance(300)
    assert node.output_times("temperature_sensor", "value") == [0.0, 30.0, 60.0]
    service.activate()
    assert node.lines()[-2:] == ["temperature_sensor started!", "Loop"]
    await node.clock.advance(30)
    assert node.output_times("temperature_sensor", "value")[-2:] == [360.0, 390.0]


async def test_stats_report_memory_uptime_and_state(node, temperature):
    service = node.runtime.load(temperature, 1000)
    assert service.state is ServiceState.LOADED
    module = temperature.module
    expected_memory = module.num_lot * 4 + len(module.data) + module.bss_size + node.runtime.stack_size
    assert service.stats.memory == expected_memory
    service.activate()
    await node.clock.advance(90)
    stats = service.stats
    assert stats.uptime == 90.0
    assert 0.0 < stats.cpu_usage < 100.0
    assert stats.error == ""


async def test_missing_sensor_ends_the_loop_with_a_message(node, temperature):
    node.temperature = None
    service = node.runtime.load(temperature, 1000)
    service.activate()
    assert node.lines() == ["temperature_sensor started!", "Loop", "Failed to get sensor!"]
    assert service.state is ServiceState.STOPPED
    assert service.stats.error == "loop() returned before the service was deactivated"
    assert node.faults == []


async def test_two_services_side_by_side(node, build):
    temperature = node.runtime.load(build("temperature_sensor"), 1000)
    counter = node.runtime.load(build("counter"), 1001)
    temperature.activate()
    counter.activate()
    await node.clock.advance(3)
    counter.input("step", 10)
    counter.input("scale", 2)
    await node.clock.advance(2)
    # at 3 s the counter had already stepped to 4 before sleeping: the new step shows from 5 s
    assert node.output_values("counter", "count") == [0, 1, 2, 3, 4, 14]
    assert node.output_values("counter", "scaled") == [0.0, 0.5, 1.0, 1.5, 8.0, 28.0]
    assert node.output_times("counter", "count") == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert node.output_times("temperature_sensor", "value") == [0.0]
    assert all(key != "undeclared" for *_, key, _, _ in node.outputs)  # not in its manifest: discarded
    assert node.lines("counter")[:3] == [
        "counter: step 1 scale 0.500000",
        "tick 0 is even| 0.00|ab  |0|0|A|%|4000000000",
        "tick 1 is odd| 0.50|ab  |1|ff|B|%|4000000000",
    ]
    assert "counter: step set" in node.lines("counter")
    counter.deactivate()
    assert node.lines("counter")[-1] == "counter: bye"
    await node.clock.advance(30)
    assert node.output_times("temperature_sensor", "value") == [0.0, 30.0]
    assert temperature.stats.memory != counter.stats.memory


FAULTS = {
    "crash": ["bad memory access: write of 4 bytes at unmapped address 0x50000000", "PC=0x", "(code+0x", "[in loop()]"],
    "invalid_instruction": ["invalid instruction 0xde2a at PC=0x", "(code+0x", "[in loop()]"],
    "busy": ["runaway: 1000000 instructions without sleeping or returning", "PC=0x", "[in loop()]"],
    "stack_overflow": ["stack overflow: write of 4 bytes", "(guard page below the stack)", "[in loop()]"],
    "sleep_in_handler": ["embserve_sleep_impl(): on_input() must not sleep", "[in on_input()]"],
}


@pytest.mark.parametrize("faulty", sorted(FAULTS))
async def test_a_faulting_service_is_stopped_and_the_node_keeps_running(node, build, faulty):
    healthy = node.runtime.load(build("temperature_sensor"), 1000)
    bad = node.runtime.load(build(faulty), 1001)
    healthy.activate()
    bad.activate()
    await node.clock.advance(2)
    if faulty == "sleep_in_handler":
        bad.input("go", 1)
    await node.clock.advance(60)
    assert bad.state is ServiceState.FAULTED
    assert len(node.faults) == 1
    name, message = node.faults[0]
    assert name == faulty
    for fragment in FAULTS[faulty]:
        assert fragment in message
    assert bad.stats.error == message
    assert healthy.state is ServiceState.RUNNING
    assert node.output_times("temperature_sensor", "value") == [0.0, 30.0, 60.0]
    if bad.manifest.inputs:
        with pytest.raises(ServiceStateError, match="service is faulted"):
            bad.input("go", 1)


async def test_faulted_service_can_be_activated_again(node, build):
    crash = node.runtime.load(build("crash"), 1000)
    crash.activate()
    await node.clock.advance(2)
    assert crash.state is ServiceState.FAULTED
    crash.activate()
    assert crash.state is ServiceState.RUNNING and crash.stats.error == ""
    assert node.lines("crash").count("crash: armed") == 2


def test_unknown_import_is_refused_at_load(node, build):
    with pytest.raises(ServiceLoadError) as info:
        node.runtime.load(build("unknown_import"), 1000)
    assert str(info.value).startswith("unknown_import: unknown import `frobnicate` (this firmware exports embserve_printf_impl")
    assert node.runtime.services == []


def test_input_is_checked_against_the_manifest(node, build):
    counter = node.runtime.load(build("counter"), 1000)
    with pytest.raises(ServiceStateError, match="counter: cannot take input `step`: service is loaded"):
        counter.input("step", 1)
    counter.activate()
    with pytest.raises(ServiceInputError, match=r"counter: `speed` is not a declared input \(inputs: step, scale\)"):
        counter.input("speed", 1)
    with pytest.raises(ServiceInputError, match="input `step` is an int, got 1.5"):
        counter.input("step", 1.5)
    with pytest.raises(ServiceInputError, match="input `step` is an int, got True"):
        counter.input("step", True)
    with pytest.raises(ServiceInputError, match="does not fit in 32 bits"):
        counter.input("step", 2**40)
    with pytest.raises(ServiceInputError, match="input `scale` is a float, got '2'"):
        counter.input("scale", "2")
    counter.input("scale", 3)  # ints are fine for a float input
    assert node.lines("counter")[-1] == "counter: scale set"


def test_load_checks_names_and_instances(node, build):
    manifest = build("temperature_sensor")
    first = node.runtime.load(manifest, 1000)
    with pytest.raises(ServiceLoadError, match="instance 1000 already holds temperature_sensor"):
        node.runtime.load(build("counter"), 1000)
    with pytest.raises(ServiceLoadError, match=r"a service of that name is already loaded \(instance 1000\)"):
        node.runtime.load(manifest, 1001)
    first.unload()
    assert node.runtime.services == []
    with pytest.raises(ServiceStateError, match="service was unloaded"):
        first.activate()
    again = node.runtime.load(manifest, 1001)
    again.activate()
    assert again.state is ServiceState.RUNNING


async def test_unload_of_a_running_service_quits_it(node, build):
    counter = node.runtime.load(build("counter"), 1000)
    counter.activate()
    await node.clock.advance(1)
    counter.unload()
    assert node.lines("counter")[-1] == "counter: bye"
    assert node.clock.pending == 0
    await node.clock.advance(10)
    assert node.output_times("counter", "count") == [0.0, 1.0]


async def test_a_node_may_own_its_machine(build):
    node = Node(VirtualClock(realtime=False), machine=Machine())
    try:
        assert node.runtime.machine not in DEFAULT_POOL.machines
        service = node.runtime.load(build("temperature_sensor"), 1000)
        service.activate()
        await node.clock.advance(30)
        assert node.output_times("temperature_sensor", "value") == [0.0, 30.0]
    finally:
        node.runtime.close()


async def test_services_run_on_a_realtime_clock(build):
    node = Node(VirtualClock(realtime=True))
    try:
        counter = node.runtime.load(build("counter"), 1000)
        counter.activate()

        async def two_ticks() -> None:
            while len(node.output_values("counter", "count")) < 2:
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(two_ticks(), timeout=10)
        except TimeoutError:
            pytest.fail(f"expected 2 counter outputs within 10 s, saw {node.outputs}")
        assert node.output_values("counter", "count")[:2] == [0, 1]
    finally:
        node.runtime.close()


async def test_fault_of_a_service_with_its_elf_names_the_source_line(node):
    """The sample bug: its ELF is in the symbol store once built, so the fault (and the 35003 error) names the line."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs gcc-arm-none-eabi to build services/faulty_sensor")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as out:
        faulty = parse_manifest(build_service(ROOT / "services" / "faulty_sensor", Path(out)).read_bytes())
    service = node.runtime.load(faulty, 1000)
    node.temperature = 22.5
    service.activate()
    service.input("offset", -2e8)
    await node.clock.advance(3)
    assert service.state is ServiceState.FAULTED
    ((name, message),) = node.faults
    assert name == "faulty_sensor" and "[in loop()]; source line: loop() at" in message and "service.c:47" in message
    assert service.stats.error == message  # what /35003/x/27404 shows
    report = service.fault
    assert (report.location.function, report.location.line) == ("loop", 47)
    assert report.registers["pc"] == report.code_offset + service._image.code_base
    assert report.register_lines()[0].startswith("r0=0x")
