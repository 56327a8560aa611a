"""Counting what a service runs on the simulator, checked against its disassembly.

The expected instructions per period come from ``arm-none-eabi-objdump -d``
of the built module, not from the emulator: :func:`period_from_disassembly`
walks ``loop()`` from the instruction after its sleep call (where a period
begins, on the wake-up) along the one path that comes back to it without
returning, and counts the instructions on the way. The counts under test
come from unicorn's block hook and a Thumb decoder of ours.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from hil.device.clock import VirtualClock
from hil.device.node import Node
from hil.metrics import DeviceMetrics, MetricsUnavailable, ServiceCost, Slice
from hil.metrics.cost import MAX_SLICES, KindStats
from hil.sdk import build_service
from hil.service.manifest import Manifest, parse_manifest
from hil.service import metering
from hil.service.metering import MeteredService, ServiceMeters, thumb_instructions
from hil.service.runtime import LoadedService, ServiceRuntime

METERED = REPO / "tests" / "data" / "services" / "metered"
TEMPERATURE = REPO / "services" / "temperature_sensor"
BOUND = 100  # instructions per period the light version stays under and the heavy one breaks
HEAVY_ROUNDS = 100

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-objdump") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="needs gcc-arm-none-eabi (compiler and objdump)")


# --------------------------------------------------------------------------- the disassembly side

INSN = re.compile(r"^\s+([0-9a-f]+):\s+(?:[0-9a-f]{4} ?){1,2}\s+(\S+)\s*(.*)$")
RETURNS = re.compile(r"^(pop(\.w)?|ldmia(\.w)?)$")
CONDITIONS = "eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le"


def disassemble(elf: Path, function: str) -> dict[int, tuple[str, str]]:
    """``function``'s instructions: address -> (mnemonic, operands); literal pools left out."""
    out = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], check=True, capture_output=True, text=True).stdout
    body = out.split(f"<{function}>:\n", 1)[1].split("\n\n", 1)[0]
    code = {}
    for line in body.splitlines():
        m = INSN.match(line)
        if m and m.group(2) != ".word":
            code[int(m.group(1), 16)] = (m.group(2), m.group(3))
    return code


def successors(code: dict[int, tuple[str, str]], at: int) -> list[int]:
    mnemonic, operands = code[at]
    following = [a for a in sorted(code) if a > at][:1]
    target = [int(m.group(1), 16)] if (m := re.match(r"(?:\w+, )?([0-9a-f]+) <", operands)) else []
    if (RETURNS.match(mnemonic) and "pc" in operands) or (mnemonic == "bx" and operands == "lr"):
        return []  # loop() returns: not part of a period
    if re.fullmatch(r"b(\.[nw])?", mnemonic):
        return target
    if re.fullmatch(rf"(cbn?z|b({CONDITIONS})(\.[nw])?)", mnemonic):
        return target + following
    return following  # blx rN calls the firmware and comes back; bl a function of the service (see below)


def period_from_disassembly(elf: Path) -> int:
    """Instructions from the wake-up after ``loop()``'s sleep round to the next sleep call, by the disassembly."""
    code = disassemble(elf, "loop")
    calls = [a for a, (mnemonic, _) in code.items() if mnemonic == "blx"]
    sleep = max(calls)  # the last firmware call in loop(): its sleep, after the period's work
    wake = min(a for a in code if a > sleep)
    cycles: list[list[int]] = []

    def walk(at: int, path: list[int]) -> None:
        for nxt in successors(code, at):
            if nxt == wake:
                cycles.append(path + [at])
            elif nxt not in path and nxt != at:
                walk(nxt, path + [at])

    walk(wake, [])
    assert len(cycles) == 1, f"expected one path from the wake-up back to it, found {len(cycles)}: {cycles}"
    (cycle,) = cycles
    assert sleep in cycle
    calls = [f"{a:#x}" for a in cycle if code[a][0] == "bl"]
    assert not calls, f"the period calls functions of the service at {calls}: the walk does not count their instructions"
    return len(cycle)


# --------------------------------------------------------------------------- the emulator side


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """service.json and service.elf of: the metered service, a heavier version of it, the temperature service."""
    out = tmp_path_factory.mktemp("metered")
    heavy_src = out / "src" / "metered"
    shutil.copytree(METERED, heavy_src)
    source = heavy_src / "service.c"
    text = source.read_text()
    assert "#define EXTRA_ROUNDS 0\n" in text
    source.write_text(text.replace("#define EXTRA_ROUNDS 0\n", f"#define EXTRA_ROUNDS {HEAVY_ROUNDS}\n"))
    toml = heavy_src / "service.toml"
    toml.write_text(toml.read_text().replace("version = 1", "version = 2"))
    built = {}
    for key, src in (("metered", METERED), ("heavy", heavy_src), ("temperature", TEMPERATURE)):
        built[key] = build_service(src, out / key)
    return built


def elf_of(service_json: Path) -> Path:
    return service_json.parent / "service.elf"


class MeteredNode:
    """A runtime on a manual clock that counts what its services run."""

    def __init__(self, meters: ServiceMeters | None = ServiceMeters()):
        self.clock = VirtualClock(realtime=False)
        self.meters = meters
        self.outputs: list[tuple[str, object]] = []
        self.runtime = ServiceRuntime("node1", self.clock, console=lambda name, line: None, sensors=lambda kind: 21.5,
                                      on_output=lambda service, key, type_, value: self.outputs.append((key, value)),
                                      on_fault=lambda service, message: pytest.fail(f"{service.name} faulted: {message}"),
                                      meters=meters)

    def metrics(self) -> DeviceMetrics:
        assert self.meters is not None
        return DeviceMetrics("node1", "simulator", 0.0, self.clock.now(), services=self.meters.snapshot())


@pytest.fixture
def node():
    n = MeteredNode(ServiceMeters())
    yield n
    n.runtime.close()


def manifest(service_json: Path) -> Manifest:
    return parse_manifest(service_json.read_bytes())


def test_thumb_decoder_tells_16_from_32_bit_instructions():
    # movs r0, #1 | ldr.w r3, [r9, r3] | bx lr | bl <+0> | nop
    code = bytes.fromhex("0120" "59f80330" "7047" "00f000f8" "00bf")
    assert thumb_instructions(code) == 5
    assert thumb_instructions(b"") == 0


async def test_every_period_runs_the_instructions_the_disassembly_counts(node, built):
    expected = period_from_disassembly(elf_of(built["metered"]))
    service = node.runtime.load(manifest(built["metered"]), 1000)
    assert isinstance(service, MeteredService)
    service.activate()
    await node.clock.advance(5.5)  # sleeps of 1000 ms: the first slice, then 5 periods
    cost = node.meters.costs["metered"]
    periods = cost.periods()
    assert [p.instructions for p in periods] == [expected] * 5
    assert [p.time for p in periods] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(p.calls == {"sensor_read": 1, "output": 1, "sleep": 1} for p in periods)
    assert [s.kind for s in cost.slices[:2]] == ["setup", "first"]
    assert cost.slices[0].calls == {"get_sensor": 1}
    assert node.metrics().instructions_per_period("metered") == expected
    assert node.metrics().sdk_calls("metered") == {"get_sensor": 1, "sensor_read": 6, "output": 6, "sleep": 6}
    assert len(node.outputs) == 6


async def test_the_temperature_service_period_matches_its_disassembly(node, built):
    expected = period_from_disassembly(elf_of(built["temperature"]))
    service = node.runtime.load(manifest(built["temperature"]), 1000)
    service.activate()
    await node.clock.advance(95)  # 30 s periods
    cost = node.meters.costs["temperature_sensor"]
    assert [p.instructions for p in cost.periods()] == [expected] * 3
    service.input("rate", 5000)  # a handler's slice is its own, not part of a period
    await node.clock.advance(40)
    assert {p.instructions for p in cost.periods()} == {expected}
    assert [s.calls for s in cost.slices if s.kind == "on_input"] == [{"printf": 2, "strcmp": 1}]
    service.deactivate()
    assert [s.kind for s in cost.slices[-2:]] == ["on_quit", "end"]


async def test_a_bound_the_heavier_version_breaks(built):
    costs = {}
    for key in ("metered", "heavy"):
        n = MeteredNode(ServiceMeters())
        try:
            n.runtime.load(manifest(built[key]), 1000).activate()
            await n.clock.advance(3.5)
            costs[key] = n.metrics().instructions_per_period("metered")
        finally:
            n.runtime.close()
    assert costs["metered"] < BOUND, costs
    with pytest.raises(AssertionError):
        assert costs["heavy"] < BOUND
    assert costs["heavy"] > costs["metered"] + 3 * HEAVY_ROUNDS, costs  # each round at least a load, an add and a store


async def test_records_outlive_an_unload_and_the_hook_leaves_with_the_code(node, built):
    first = node.runtime.load(manifest(built["metered"]), 1000)
    first.activate()
    await node.clock.advance(2.5)
    code_range = (first._image.code_base, first._image.code_size)
    first.unload()
    cost = node.meters.costs["metered"]
    before = cost.total_instructions
    # The temperature service now takes the freed address range: none of its blocks count for metered.
    other = node.runtime.load(manifest(built["temperature"]), 1001)
    assert (other._image.code_base, other._image.code_size)[0] == code_range[0]
    other.activate()
    await node.clock.advance(31)
    assert cost.total_instructions == before
    # Deployed again, the same record goes on.
    node.runtime.load(manifest(built["metered"]), 1002).activate()
    await node.clock.advance(2.5)
    assert len(cost.periods()) == 4 and cost.total_instructions > before


async def test_metrics_off_loads_plain_services_and_adds_no_hook(built, monkeypatch):
    counters = []  # every block hook metering adds (a spy around the real BlockCounter)
    real = metering.BlockCounter
    monkeypatch.setattr(metering, "BlockCounter", lambda *args: counters.append(real(*args)) or counters[-1])
    for meters in (None, ServiceMeters()):
        node = MeteredNode(meters)
        try:
            service = node.runtime.load(manifest(built["metered"]), 1000)
            service.activate()
            await node.clock.advance(1.5)
            assert len(node.outputs) == 2
            if meters is None:
                assert type(service) is LoadedService and counters == []
            else:
                assert len(counters) == 1 and counters[0].total > 0
        finally:
            node.runtime.close()


def deploy_on(node: Node, inst: int, service_json: Path) -> None:
    """What the gateway's create, write, install and activate do on the node's /9, called on its object store."""
    node.objects.create("/9", iid=inst)
    node.objects.write(f"/9/{inst}/2", {f"/9/{inst}/2": service_json.read_bytes()})
    node.objects.execute(f"/9/{inst}/4")
    node.objects.execute(f"/9/{inst}/10")


@pytest.mark.parametrize("realtime", [False, True], ids=["virtual-time", "real-time"])
async def test_a_node_meters_its_services_on_either_clock_and_across_a_reboot(built, realtime):
    """The node's own path (object 9 and its runtime), on the manual clock of virtual-time runs and on the
    real-time clock of the sim target (100 times faster than the wall: a 1 s period in 10 ms)."""
    expected = period_from_disassembly(elf_of(built["metered"]))
    clock = VirtualClock(realtime=realtime, scale=100.0)

    async def run_for(seconds: float) -> None:
        if realtime:
            await asyncio.sleep(seconds / clock.scale)
        else:
            await clock.advance(seconds)

    async with Node("metered1", clock=clock, meter_services=True) as node:
        meters = node.service_meters
        deploy_on(node, 1000, built["metered"])
        assert isinstance(node.services.packages[1000].service, MeteredService)
        await run_for(5.5)
        cost = meters.costs["metered"]
        before = len(cost.periods())
        assert before >= (3 if realtime else 5)  # a loaded machine may run a real-time node's timers late
        await node.reboot()  # services are gone with the RAM; their records stay with the node
        assert node.service_meters is meters and meters.costs["metered"] is cost
        deploy_on(node, 1000, built["metered"])
        await run_for(3.5)
        assert len(cost.periods()) >= before + (2 if realtime else 3)
        assert {p.instructions for p in cost.periods()} == {expected}
        assert [s.kind for s in cost.slices].count("setup") == 2


def test_a_long_record_stops_growing_and_its_figures_stay_exact():
    cost = ServiceCost("svc", start=0.0)
    for i in range(3 * MAX_SLICES + 7):
        cost.record(float(i), "period", 40 + i % 3, ("output", "sleep"))
    assert len(cost.slices) < MAX_SLICES and cost.folded + len(cost.slices) == 3 * MAX_SLICES + 7
    assert cost.kinds["period"] == KindStats(3 * MAX_SLICES + 7, sum(40 + i % 3 for i in range(3 * MAX_SLICES + 7)), 40, 42)
    assert cost.calls == {"output": 3 * MAX_SLICES + 7, "sleep": 3 * MAX_SLICES + 7}
    assert cost.instructions.total == cost.total_instructions == cost.kinds["period"].instructions
    assert cost.slices[-1] == Slice(3 * MAX_SLICES + 6.0, "period", 40 + (3 * MAX_SLICES + 6) % 3, {"output": 1, "sleep": 1})
    again = ServiceCost.from_json(json.loads(json.dumps(cost.to_json())))
    assert (again.kinds, again.calls, again.total_instructions) == (cost.kinds, cost.calls, cost.total_instructions)


def test_what_the_simulator_cannot_count_says_where_it_is_counted(built):
    metrics = DeviceMetrics("node1", "simulator", 0.0, 1.0)
    for ask in (lambda: metrics.peripheral_accesses("uart0"), metrics.exceptions, metrics.memory_accesses,
                lambda: metrics.instructions_per_period("metered")):
        with pytest.raises(MetricsUnavailable, match="node1: no .*(Renode|simulator)"):
            ask()
