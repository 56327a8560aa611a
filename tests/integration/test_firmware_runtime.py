"""The reference firmware's service runtime under QEMU, driven through LwM2M.

Each test boots ``embserve.elf`` on QEMU ``mps2-an385``, registers it to the
project's :class:`Gateway` and deploys services over object 9 (create, write
the package, Install, Activate), as the far-edge kubelet does. What is checked
is the runtime: FITA's real temperature binary and the project's own build run
side by side, outputs follow ``sensor set``, printf lines reach the console,
inputs reach ``on_input`` (``embserve service input``), deactivation ends
``loop()``, and services that crash (bad store, undefined instruction, stack
overflow, an ``on_input`` that hangs or faults) or hog the CPU are contained while the node
keeps serving.

Test services live in tests/integration/firmware_services/ and are built with
the project SDK (hil.sdk); the firmware is built once per session into a
private directory (qemu_helpers).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FsPath

import pytest
from conftest import FITA_SERVICE, REPO
from conftest import firmware_elf as build_firmware
from qemu_helpers import booted, install, node_console, register, sdk_service, service_monitor

from hil.console import Console, Shell
from hil.gateway.server import Gateway
from hil.lwm2m.model import Path

PROJECT_SERVICE = REPO / "services" / "temperature_sensor"
TEST_SERVICES = REPO / "tests" / "integration" / "firmware_services"
EP = "rt-node"

# /9 Update Result values the firmware reports (OMA object 9).
RESULT_INSTALLED = 2
RESULT_UPDATE_ERROR = 57

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    return build_firmware(tmp_path_factory)  # once per session; skips without the tools


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """service.json bytes by name: the SDK-built test services and the project's temperature service."""
    out = tmp_path_factory.mktemp("services")
    built: dict[str, bytes] = {}
    for src in [PROJECT_SERVICE, *sorted(p for p in TEST_SERVICES.iterdir() if (p / "service.toml").is_file())]:
        built[src.name] = sdk_service(src, out / src.name)
    return built


@pytest.fixture
def fita_package() -> bytes:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA's temperature service not found at {FITA_SERVICE} (shared/ is not next to the repo)")
    return FITA_SERVICE.read_bytes()


@dataclass
class Node:
    console: Console
    shell: Shell
    gateway: Gateway

    async def deploy(self, inst: int, package: bytes, *, activate: bool = True) -> None:
        await install(self.gateway, EP, inst, package, write_timeout=20)
        result = await self.update_result(inst)
        assert result == RESULT_INSTALLED, f"install of /9/{inst} gave update result {result}: {await self.error(inst)!r}"
        if activate:
            await self.gateway.execute(EP, f"/9/{inst}/10")

    async def update_result(self, inst: int) -> int:
        return (await self.gateway.read(EP, f"/9/{inst}/9"))[Path(9, inst, 9)]

    async def active(self, inst: int) -> bool:
        return (await self.gateway.read(EP, f"/9/{inst}/12"))[Path(9, inst, 12)]

    async def monitor(self, inst: int) -> dict[int, object]:
        """The /35003 resources (27400..27404) of software package /9/inst."""
        return await service_monitor(self.gateway, EP, inst)

    async def error(self, inst: int) -> str:
        return str((await self.monitor(inst))[27404])

    async def services(self) -> dict[int, str]:
        """`embserve service list`: instance -> the rest of its line."""
        lines = await self.shell.exec("embserve service list")
        listed = {}
        for line in lines:
            if m := re.match(r"(\d+) (.*)", line):
                listed[int(m.group(1))] = m.group(2)
        return listed

    async def read_until(self, path: str, want: object, timeout: float = 5.0) -> None:
        """Read `path` until it holds `want` (an output may still be on its way)."""
        seen = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            content = await self.gateway.read(EP, path)
            seen.append(next(iter(content.values())))
            if seen[-1] == want:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{path} never became {want!r} within {timeout} s; read {seen}")
            await asyncio.sleep(0.05)

    async def still_serving(self) -> None:
        """The node answers LwM2M and its shell: what a fault must not take away."""
        assert (await self.gateway.read(EP, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
        assert any("temperature = " in line for line in await self.shell.exec("sensor get temperature"))


@contextlib.asynccontextmanager
async def running_node(elf: FsPath, gateway: Gateway, log_dir: FsPath) -> AsyncIterator[Node]:
    async with booted(elf, log_dir, node_console(EP, log_dir)) as firmware:
        await register(firmware.shell, gateway, EP)
        yield Node(firmware.console, firmware.shell, gateway)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(host="127.0.0.1", port=0) as gw:
        yield gw


@pytest.fixture
async def node(firmware_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> AsyncIterator[Node]:
    async with running_node(firmware_elf, gateway, tmp_path) as n:
        yield n


async def next_value(readings, want: float, timeout: float = 5.0) -> float:
    """The next observed value equal to `want` (older values may still be in flight)."""
    seen = []

    async def wait() -> float:
        async for reading in readings:
            seen.append(reading.value())
            if seen[-1] == want:
                return seen[-1]
        raise AssertionError("observation ended")

    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no reading of {want} within {timeout} s; saw {seen}") from None


# --------------------------------------------------------------------------- FITA's binary


@pytest.mark.slow   # FITA's loop sleeps out its first 30 s period before a new rate applies
async def test_fita_service_outputs_printf_input_and_deactivate(node: Node, fita_package: bytes) -> None:
    await node.shell.exec("sensor set temperature 23.5")
    async with node.gateway.observe(EP, "/3303/0/5700") as readings:
        await asyncio.wait_for(anext(readings), 5)   # the board's own value
        await node.deploy(1000, fita_package)
        await node.console.expect("[temperature_sensor] temperature_sensor started!", timeout=5)
        await node.console.expect("[temperature_sensor] Loop", timeout=5)
        assert await next_value(readings, 23.5) == 23.5

        # Inputs reach the real binary's on_input(): key, type 0 (int), one value.
        lines = await node.shell.exec("embserve service input 1000 rate 10")
        assert any("delivered to 1000" in line for line in lines), lines
        await node.console.expect("[temperature_sensor] on_input(): (rate,0,1)", timeout=5)
        await node.console.expect("[temperature_sensor] on_input(): Bad input. Rate too low (10)", timeout=5)
        await node.shell.exec("embserve service input 1000 rate 1000")
        await node.console.expect("[temperature_sensor] on_input(): New rate 1000 ms", timeout=5)
        refused = await node.shell.exec("embserve service input 1000 speed 3")
        assert any("input not declared by the service" in line for line in refused), refused
        refused = await node.shell.exec("embserve service input 1000 rate fast")
        assert any("does not match its type" in line for line in refused), refused

        listed = await node.services()
        assert listed[1000].startswith("temperature_sensor v1 running"), listed
        stats = await node.monitor(1000)
        assert int(stats[27402]) > 1024     # code + LOT + bss + stacks in RAM
        assert stats[27404] == ""

        # The service still sleeps out its first 30 s period; then it reads
        # every second, so each new sensor value shows up within a period.
        await node.shell.exec("sensor set temperature 24.25")
        assert await next_value(readings, 24.25, timeout=40) == 24.25
        await node.shell.exec("sensor set temperature 19.0")
        assert await next_value(readings, 19.0, timeout=5) == 19.0

        await node.gateway.execute(EP, "/9/1000/11")    # Deactivate: on_quit(), loop() returns
        assert await node.active(1000) is False
        assert "stopped" in (await node.services())[1000]
    await node.still_serving()


# --------------------------------------------------------------------------- several services


async def test_two_services_run_side_by_side_and_stop_independently(
    node: Node, fita_package: bytes, packages: dict[str, bytes]
) -> None:
    await node.shell.exec("sensor set temperature 21.0")
    await node.deploy(1000, fita_package)
    await node.console.expect("[temperature_sensor] Loop", timeout=5)
    await node.deploy(1001, packages["temperature_sensor"])
    await node.console.expect("[temperature_sensor] Loop", timeout=5)
    # The second service's output claims its own 3303 instance.
    await node.read_until("/3303/1/5700", 21.0)
    listed = await node.services()
    assert listed[1000].startswith("temperature_sensor v1 running")
    assert listed[1001].startswith("temperature_sensor v1 running")

    await node.deploy(1002, packages["printf_check"])
    await node.console.expect("[printf_check] outputs sent", timeout=5)
    await node.gateway.execute(EP, "/9/1001/11")
    listed = await node.services()
    assert "stopped" in listed[1001] and "running" in listed[1000] and "running" in listed[1002], listed
    await node.gateway.delete(EP, "/9/1002")
    assert 1002 not in await node.services()
    assert await node.active(1000) is True


async def test_printf_conversions_and_undeclared_outputs(node: Node, packages: dict[str, bytes]) -> None:
    await node.deploy(1000, packages["printf_check"])
    # Doubles as the first variadic argument and after an int: both AAPCS alignments.
    for line in (
        "[printf_check] f=21.500000",
        "[printf_check] d=-7 f=3.25 s=txt",
        "[printf_check] u=4000000000 lu=123456789 x=beef c=Z i=42 pct=%",
        "[printf_check] two",
        "[printf_check] lines",
        "[printf_check] w=[   42] [ab  ] [002.5]",
        "[printf_check] ll=-1234567890123 e=1.234500e+03 g=0.0001",
        "[printf_check] outputs sent",
    ):
        await node.console.expect(line, timeout=5)
    # "sum" is mapped to lwm2m:3300/x/5700; "undeclared" never reaches the node.
    await node.read_until("/3300/0/5700", 1.25)
    assert not any("undeclared" in line.text for line in node.console.history)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "service,error",
    [
        ("crash_store", r"BusFault PRECISERR pc=\+0x[0-9a-f]+ addr=0xfffffff0"),
        ("crash_undef", r"UsageFault UNDEFINSTR pc=\+0x[0-9a-f]+"),
        ("stack_overflow", r"stack overflow \(MemManage DACCVIOL\) pc=\+0x[0-9a-f]+ addr=0x2[0-9a-f]{7}"),
    ],
)
async def test_crashing_service_stops_alone(
    node: Node, fita_package: bytes, packages: dict[str, bytes], service: str, error: str
) -> None:
    await node.shell.exec("sensor set temperature 22.0")
    await node.deploy(1000, fita_package)
    await node.deploy(1001, packages[service], activate=False)
    async with node.gateway.observe(EP, "/9/1001/9") as result:
        assert (await asyncio.wait_for(anext(result), 5)).value() == RESULT_INSTALLED
        await node.gateway.execute(EP, "/9/1001/10")
        assert (await asyncio.wait_for(anext(result), 10)).value() == RESULT_UPDATE_ERROR
    await node.console.expect(re.compile(rf"\[{service}\] service faulted in setup/loop: {error}"), timeout=5)
    assert re.fullmatch(error, await node.error(1001)), await node.error(1001)
    assert await node.active(1001) is False
    assert "faulted" in (await node.services())[1001]
    assert "still alive" not in "\n".join(line.text for line in node.console.history)

    # The other service and the node carry on.
    assert "running" in (await node.services())[1000]
    await node.shell.exec("embserve service input 1000 rate 2000")
    await node.console.expect("[temperature_sensor] on_input(): New rate 2000 ms", timeout=5)
    await node.still_serving()
    # The faulted instance can be removed and the slot reused.
    await node.gateway.delete(EP, "/9/1001")
    await node.deploy(1001, packages["temperature_sensor"])
    await node.console.expect("[temperature_sensor] temperature_sensor started!", timeout=5)


@pytest.mark.parametrize(
    "key,error",
    [
        ("hang", r"on_input\(\) did not return within 200 ms"),
        ("crash", r"UsageFault UNDEFINSTR pc=\+0x[0-9a-f]+"),
    ],
)
async def test_misbehaving_on_input_stops_the_service(
    node: Node, packages: dict[str, bytes], key: str, error: str
) -> None:
    await node.deploy(1000, packages["bad_input"])
    lines = await node.shell.exec(f"embserve service input 1000 {key} 1")
    assert any("refused by 1000: service faulted" in line for line in lines), lines
    await node.console.expect(f"[bad_input] on_input({key})", timeout=5)
    await node.console.expect(re.compile(rf"\[bad_input\] service faulted in on_input/on_quit: {error}"), timeout=5)
    assert re.fullmatch(error, await node.error(1000)), await node.error(1000)
    assert await node.update_result(1000) == RESULT_UPDATE_ERROR
    assert "faulted" in (await node.services())[1000]
    await node.still_serving()


async def test_cpu_hog_is_preempted_and_can_be_stopped(node: Node, packages: dict[str, bytes]) -> None:
    await node.deploy(1000, packages["hog"])
    await node.console.expect("[hog] hog started", timeout=5)
    # The main loop keeps its share of the CPU: LwM2M and the shell still answer.
    await node.still_serving()
    # CPU usage covers the last full second: poll until a window has passed.
    seen = []
    for _ in range(40):
        seen.append(float((await node.monitor(1000))[27401]))
        if seen[-1] > 50.0:
            break
        await asyncio.sleep(0.1)
    assert seen[-1] > 50.0, f"hog's CPU usage never went above 50%: {seen}"
    await node.gateway.execute(EP, "/9/1000/11")
    await node.console.expect(re.compile(r"\[hog\] hog stopped after \d+ spins"), timeout=5)
    assert "stopped" in (await node.services())[1000]


async def test_unknown_import_fails_the_install(node: Node, packages: dict[str, bytes]) -> None:
    await install(node.gateway, EP, 1000, packages["bad_import"])
    assert await node.update_result(1000) != RESULT_INSTALLED
    assert await node.error(1000) == "unknown import 'embserve_reboot_impl'"
    assert 1000 not in await node.services()
    await node.still_serving()
