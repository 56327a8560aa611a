"""Differential test: one service, one scenario, on the simulator and on QEMU.

Each service (the project's own temperature_sensor built with the SDK, and
FITA's binary when ../shared is present) runs the same scenario on a
simulated node and on the reference firmware under QEMU, through the same
Target interface, gateway and deployer:

1. the temperature sensor is set to the first value, the service is deployed
   (it reports at once, then sleeps its default 30 s period);
2. its ``rate`` input is set to 1000 ms, then to 500 ms (refused);
3. for every further value: set the sensor, wait for the first reading of
   that value, record it.

Waiting for the value (not for a time) makes the recorded sequence
independent of timing: the simulator runs on a manual virtual clock moved in
small steps, QEMU in real time. What is compared: the recorded readings of
/3303/0/5700, and every line the service printed, stripped of the backend's
framing (a prompt in front of it on the simulator, the ``[name]`` prefix).

Readings are compared as the float32 the service output: the simulator
reports the shortest decimal of that float32 (21.3), the firmware widens it
(21.299999237060547); both are the same float32.

The four runs go concurrently: QEMU waits out the first 30 s period in real
time, once for both services.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass
from pathlib import Path as FsPath

import pytest
from conftest import FITA_SERVICE, REPO, firmware_elf

from hil.device.clock import VirtualClock
from hil.faredge.deployer import Deployer
from hil.service.manifest import parse_manifest
from hil.gateway.server import Gateway
from hil.readings import ReadingCollector
from hil.targets.base import Target, TargetConfig, get_target_class

pytestmark = [pytest.mark.emulation, pytest.mark.slow]

EP = "diff-node"
VALUES = (20.0, 18.25, 21.3, -4.0, 0.0, 99.9)  # consecutive values differ; 21.3 and 99.9 are not exact in float32
FAST_RATE_MS = 1000
REFUSED_RATE_MS = 500
DEFAULT_PERIOD_S = 30.0
STEP_S = 0.25  # device time between looks at the readings
WAIT_S = DEFAULT_PERIOD_S + 15  # device seconds a value may take to be reported
BACKENDS = ("sim", "qemu")
SERVICES = ("project", "fita")


@dataclass
class Run:
    """What one backend reported for one service."""

    recorded: list[float]  # the first reading of each injected value, in order
    readings: list[float]  # every reading, in order
    lines: list[str]  # what the service printed, in order


def float32(value: float) -> bytes:
    return struct.pack("<f", value)


def collapse(values: list[float]) -> list[float]:
    """Runs of the same value as one: a slow shell may let a value be reported twice."""
    return [v for i, v in enumerate(values) if i == 0 or float32(v) != float32(values[i - 1])]


async def next_reading(target: Target, collector: ReadingCollector, since: int, value: float) -> float:
    """The first reading of ``value`` after index ``since``, letting device time pass in steps."""
    waited = 0.0
    while True:
        for reading in collector.readings[since:]:
            if abs(float(reading.value) - value) < 1e-3:
                return float(reading.value)
        if waited >= WAIT_S:
            raise AssertionError(f"{target.describe()}: no reading of {value} within {WAIT_S:g} device s; "
                                 f"readings: {collector.values()}\nconsole:\n{target.console.tail()}")
        await target.sleep_device(STEP_S)
        await asyncio.sleep(0.01)  # the notification crosses loopback UDP in real time
        waited += STEP_S


async def run_scenario(backend: str, package: bytes, firmware: FsPath, log_dir: FsPath) -> Run:
    service = parse_manifest(package).name
    printed = re.compile(rf"\[{re.escape(service)}\] (.*)$")
    options = {"clock": VirtualClock(realtime=False)} if backend == "sim" else {}
    config = TargetConfig(endpoint=EP, log_dir=log_dir, firmware=firmware, options=options)
    async with Gateway(host="127.0.0.1", port=0) as gateway, get_target_class(backend)(config) as target:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration(EP, timeout=20)
        await target.set_sensor("temperature", VALUES[0])
        first_line = len(target.console.history)
        async with Deployer(gateway) as deployer:
            deployment = await deployer.deploy(package, EP)
        async with ReadingCollector(gateway, EP, "/3303/0/5700", include_initial=True) as collector:
            recorded = [await next_reading(target, collector, 0, VALUES[0])]
            for rate in (FAST_RATE_MS, REFUSED_RATE_MS):
                out = await target.shell.exec(f"embserve service input {deployment.instance} rate {rate}")
                assert any("delivered" in line for line in out), f"{target.describe()}: rate {rate}: {out}"
            for value in VALUES[1:]:
                since = len(collector.readings)
                await target.set_sensor("temperature", value)
                recorded.append(await next_reading(target, collector, since, value))
            readings = [float(v) for v in collector.values()]
        # Each printf line goes out before the outputs that follow it (one queue on the
        # firmware, in order on the simulator), so all of them are here by now.
        lines = [m.group(1) for line in list(target.console.history)[first_line:] if (m := printed.search(line.text))]
    return Run(recorded, readings, lines)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    from hil.sdk import build_service

    built = build_service(REPO / "services" / "temperature_sensor", tmp_path_factory.mktemp("service"))
    found = {"project": built.read_bytes()}
    if FITA_SERVICE.is_file():
        found["fita"] = FITA_SERVICE.read_bytes()
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, packages: dict[str, bytes]) -> dict[tuple[str, str], Run | BaseException]:
    """Every (service, backend) scenario, run once and concurrently; a failed one keeps its exception."""
    firmware = firmware_elf(tmp_path_factory)  # skips without the ARM toolchain or QEMU
    logs = tmp_path_factory.mktemp("differential")
    keys = [(service, backend) for service in packages for backend in BACKENDS]

    async def all_runs() -> list[Run | BaseException]:
        return await asyncio.gather(
            *(run_scenario(backend, packages[service], firmware, logs / f"{service}-{backend}") for service, backend in keys),
            return_exceptions=True,
        )

    return dict(zip(keys, asyncio.run(all_runs())))


def result(runs: dict[tuple[str, str], Run | BaseException], service: str, backend: str) -> Run:
    outcome = runs[(service, backend)]
    if isinstance(outcome, BaseException):
        raise AssertionError(f"{service} service on {backend}: the scenario failed: {outcome!r}") from outcome
    return outcome


@pytest.mark.parametrize("service", SERVICES)
def test_service_reports_and_prints_the_same_on_sim_and_qemu(service: str, packages: dict[str, bytes],
                                                             request: pytest.FixtureRequest) -> None:
    if service not in packages:
        pytest.skip(f"FITA's temperature service not found at {FITA_SERVICE} (../shared is not next to the repository)")
    runs = request.getfixturevalue("runs")
    sim, qemu = (result(runs, service, backend) for backend in BACKENDS)

    # Each backend reported exactly the injected values, each one until the next was set.
    for backend, run in (("sim", sim), ("qemu", qemu)):
        assert [float32(v) for v in run.recorded] == [float32(v) for v in VALUES], (backend, run.recorded)
        assert [float32(v) for v in collapse(run.readings)] == [float32(v) for v in run.recorded], (backend, run.readings)

    assert [float32(v) for v in sim.recorded] == [float32(v) for v in qemu.recorded], (sim.recorded, qemu.recorded)
    assert sim.lines == qemu.lines, f"printed on the simulator: {sim.lines}\nprinted on QEMU: {qemu.lines}"
    assert len(sim.lines) >= 2 + 2 * 2, f"expected setup, loop and two on_input() calls to print: {sim.lines}"
