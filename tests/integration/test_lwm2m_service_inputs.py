"""Service inputs the LwM2M server writes: the simulator and the reference firmware under QEMU.

A service maps an input to a writable resource (``lwm2m:3308/x/5900``, Set
Point Value); the node claims the instance at install and a server's Write
of that resource calls the service's ``on_input``. Two tests, each running
both backends side by side:

* the shipped thermostat suite (hil/suites/thermostat.py) in child pytests,
  on boards whose files say ``service_input = "lwm2m"``: the set points go
  through the gateway, never through the shell; on the simulator the board
  has a real-sensor stand-in (no injection), on QEMU injection is declared,
  so both paths of the suite run;
* one scenario through the Target interface, recording what each backend
  answers: the value delivered and read back, 4.05 while the service is
  stopped (the value kept), the instance released with the service, an int
  input refusing a fraction (4.00) and taking a whole number, and an input
  mapped to a read-only resource refused at install (Update Result 54).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path as FsPath

import pytest
from conftest import REPO, firmware_elf, run_child_pytest, wait_until

from hil.faredge.deployer import DeployError, Deployer
from hil.gateway.errors import GatewayRequestError
from hil.gateway.server import Gateway
from hil.lwm2m import Path
from hil.readings import ReadingCollector
from hil.resources import boards_dir
from hil.sdk import build_service
from hil.targets.base import Target, TargetConfig, get_target_class

pytestmark = [pytest.mark.emulation, pytest.mark.slow]

EP = "input-node"
SET_POINT = (3308, 5900)
SIM_BOARD = 'name = "sim_lwm2m"\narch = "armv7e-m"\nbackends = ["sim"]\ninject = []\nservice_input = "lwm2m"\n'


def qemu_board() -> str:
    """The catalog's mps2_an385 (reference firmware, injection declared) writing service inputs over LwM2M."""
    text = (boards_dir() / "mps2_an385.toml").read_text()
    changed = text.replace('name = "mps2_an385"', 'name = "mps2_an385_lwm2m"').replace(
        'service_input = "shell"', 'service_input = "lwm2m"')
    assert changed.count("mps2_an385_lwm2m") == 1 and 'service_input = "lwm2m"' in changed, text
    return changed


async def run_thermostat_suite(rig: FsPath, board: str, target: list[str]) -> None:
    code, out = await run_child_pytest(
        ["--pyargs", "hil.suites.thermostat", "-q", "-p", "no:cacheprovider", "-rs", *target, "--board", board,
         "--hil-log-dir", str(rig / "hil-logs")],
        env=dict(os.environ, EMBSERVE_HIL_BOARDS=str(rig.parent / "lab-boards")), timeout=300)
    assert code == 0 and "1 passed" in out, f"{board}:\n{out[-4000:]}"
    console = "\n".join(p.read_text(errors="replace") for p in (rig / "hil-logs").rglob("node1.console.log"))
    assert console.count("[thermostat] set point ") == 2, console[-3000:]
    assert "service input" not in console, f"{board}: an input went through the shell:\n{console[-3000:]}"


async def test_thermostat_suite_writes_set_points_over_lwm2m_on_sim_and_qemu(
    tmp_path: FsPath, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elf = firmware_elf(tmp_path_factory)  # skips without the ARM toolchain or QEMU
    boards = tmp_path / "lab-boards"
    boards.mkdir()
    (boards / "sim_lwm2m.toml").write_text(SIM_BOARD)
    (boards / "mps2_an385_lwm2m.toml").write_text(qemu_board())
    await asyncio.gather(
        run_thermostat_suite(tmp_path / "sim", "sim_lwm2m", ["--target", "sim"]),
        run_thermostat_suite(tmp_path / "qemu", "mps2_an385_lwm2m", ["--target", "qemu", "--firmware", str(elf)]),
    )


# --------------------------------------------------------------------------- one scenario, both backends

#: what each backend must answer, step by step
EXPECTED = [
    ("demand reported for set point 23.5", 3.5),
    ("set point read back", 23.5),
    ("write while the service is stopped", "4.05"),
    ("set point after the refused write", 23.5),
    ("set point instances after removal", []),
    ("1500.5 to the int input 'rate'", "4.00"),
    ("2000 to the int input 'rate'", "on_input(): New rate 2000 ms"),
    ("install of an input mapped to lwm2m:3303/x/5700", "Update Result 54: input 'setpoint': lwm2m:3303/x/5700 is not writable here"),
]


def remapped(package: bytes, key: str, mapping: str) -> bytes:
    manifest = json.loads(package)
    next(spec for spec in manifest["inputs"] if spec["key"] == key)["data_model_mapping"] = [mapping]
    return json.dumps(manifest).encode()


async def set_point_path(gateway: Gateway) -> Path:
    instances = lambda: gateway.registration(EP).available_instances.get(SET_POINT[0], [])  # noqa: E731
    await wait_until(lambda: bool(instances()), f"{EP} to register a /{SET_POINT[0]} instance")
    return Path(SET_POINT[0], instances()[0], SET_POINT[1])


async def refusal(request) -> str:
    try:
        await request
    except GatewayRequestError as e:
        return e.code.split()[0]
    return "accepted"


async def value(gateway: Gateway, path: Path) -> float:
    return float((await gateway.read(EP, path))[path])


async def run_scenario(backend: str, packages: dict[str, bytes], firmware: FsPath, log_dir: FsPath) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    config = TargetConfig(endpoint=EP, log_dir=log_dir, firmware=firmware)
    async with Gateway(host="127.0.0.1", port=0) as gateway, get_target_class(backend)(config) as target, \
            Deployer(gateway) as deployer:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration(EP, timeout=20)
        await target.set_sensor("temperature", 20.0)

        thermostat = await deployer.deploy(packages["thermostat"], EP)
        set_point = await set_point_path(gateway)
        async with ReadingCollector(gateway, EP, resource=(3300, 5700)) as demand:
            since = len(demand.readings)  # the service reports before the write is answered
            await gateway.write(EP, set_point, 23.5)
            seen.append((EXPECTED[0][0], (await demand.wait_for_value(3.5, timeout=5, since=since)).value))
        seen.append((EXPECTED[1][0], await value(gateway, set_point)))
        await gateway.execute(EP, f"/9/{thermostat.instance}/11")  # Deactivate
        seen.append((EXPECTED[2][0], await refusal(gateway.write(EP, set_point, 25.0))))
        seen.append((EXPECTED[3][0], await value(gateway, set_point)))
        await deployer.remove(EP, thermostat)
        gone = lambda: not gateway.registration(EP).available_instances.get(SET_POINT[0])  # noqa: E731
        await wait_until(gone, f"{EP} to drop its /{SET_POINT[0]} instance with the service")
        seen.append((EXPECTED[4][0], gateway.registration(EP).available_instances.get(SET_POINT[0], [])))

        rate = await deployer.deploy(remapped(packages["temperature_sensor"], "rate", "lwm2m:3308/x/5900"), EP)
        set_point = await set_point_path(gateway)
        seen.append((EXPECTED[5][0], await refusal(gateway.write(EP, set_point, 1500.5))))
        await gateway.write(EP, set_point, 2000.0)
        line = await target.console.expect(re.compile(r"on_input\(\): New rate \d+ ms"), timeout=5)
        seen.append((EXPECTED[6][0], line.group(0)))
        await deployer.remove(EP, rate)

        try:
            await deployer.deploy(remapped(packages["thermostat"], "setpoint", "lwm2m:3303/x/5700"), EP)
            seen.append((EXPECTED[7][0], "installed"))
        except DeployError as e:
            reason = re.search(r"input 'setpoint': \S+ is not writable here", str(e))
            result = "Update Result 54" if "Update Result 54" in str(e) else "another result"
            seen.append((EXPECTED[7][0], f"{result}: {reason.group(0)}" if reason else str(e)))
    return seen


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("services")
    return {name: build_service(REPO / "services" / name, out / name).read_bytes()
            for name in ("thermostat", "temperature_sensor")}


async def test_input_mapped_resource_answers_the_same_on_sim_and_qemu(
    tmp_path: FsPath, tmp_path_factory: pytest.TempPathFactory, packages: dict[str, bytes]
) -> None:
    firmware = firmware_elf(tmp_path_factory)  # skips without the ARM toolchain or QEMU
    sim, qemu = await asyncio.gather(*(run_scenario(backend, packages, firmware, tmp_path / backend)
                                       for backend in ("sim", "qemu")))
    assert sim == EXPECTED, f"simulator: {sim}"
    assert qemu == EXPECTED, f"reference firmware on QEMU: {qemu}"
