"""The reference firmware on Renode's Cortex-M4F boards: nrf52840dk and stm32f4_discovery.

Each board gets its own build (``make -C firmware BOARD=...``), on the
project's platforms (renode/<board>.repl). The nRF52840 reaches the gateway
over SLIP on UARTE1; the STM32F4 over SLIP on USART3 and, inside a network
namespace this module creates (``unshare -rn``) with a TAP device in it,
over its Ethernet MAC and a Renode switch. Renode cannot be installed on the
project's own machines, so these tests skip there (``requires_renode``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, stop_child

from hil.boards import get_board
from hil.console import ConsoleTimeout
from hil.gateway.server import Gateway
from hil.lwm2m.model import Path as LwPath
from hil.targets.base import TargetConfig
from hil.targets.renode import RenodeTarget

M4F_BOARDS = {  # board: (what /3/0/1 says, the SLIP interface's driver name on the console)
    "nrf52840dk": ("nrf52840dk", "SLIP on UARTE1"),
    "stm32f4_discovery": ("stm32f4-discovery", "SLIP on USART3"),
}
FPU_CHECK = REPO / "tests" / "integration" / "firmware_services" / "fpu_check"
TAP, TAP_ADDRESS = "tap0", "10.0.2.2"  # eth0's defaults in the firmware: 10.0.2.15/24, gateway 10.0.2.2
HIL_PASSED = 5  # tests/hil: the temperature suite and its cost test (Renode records metrics)
HIL_NODES = 6  # and the sample bug (a strict xfail): every test boots its node

pytestmark = [pytest.mark.emulation, pytest.mark.requires_renode]


@pytest.fixture(scope="module")
def build_firmware(tmp_path_factory: pytest.TempPathFactory):
    """``build_firmware(board)``: the reference firmware for that board, built once per module."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None:
        pytest.skip("arm-none-eabi-gcc or make is not installed: cannot build the reference firmware")
    built: dict[str, Path] = {}

    def build(board: str) -> Path:
        if board not in built:
            out = tmp_path_factory.mktemp(f"firmware-{board}")
            run = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"BOARD={board}", f"BUILD={out}", "-j2"],
                                 capture_output=True, text=True, timeout=600, check=False)
            assert run.returncode == 0, f"firmware build for {board} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
            built[board] = out / "embserve.elf"
        return built[board]

    return build


def renode_target(log_dir: Path, board: str, firmware: Path, **options) -> RenodeTarget:
    return RenodeTarget(TargetConfig(endpoint="node1", log_dir=log_dir, board=get_board(board), firmware=firmware,
                                     options=options))


@pytest.mark.parametrize("board", sorted(M4F_BOARDS))
async def test_reference_firmware_registers_over_slip_on_m4f_board(board: str, build_firmware, tmp_path: Path) -> None:
    model, slip_driver = M4F_BOARDS[board]
    async with Gateway(host="127.0.0.1", port=0) as gateway, renode_target(tmp_path, board, build_firmware(board)) as target:
        assert target.net == "slip"  # the STM32F4 without a TAP device too
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        registration = await gateway.wait_for_registration("node1", timeout=30)
        assert [flow.local for flow in target.bridge.flows] == [registration.address]
        assert (await gateway.read("node1", "/3/0/1"))[LwPath(3, 0, 1)] == model
        # A float through the firmware's FPU (softfp) and back over LwM2M.
        await target.set_sensor("temperature", 23.75)
        readings = await gateway.read("node1", "/3303/0/5700")
        assert readings[LwPath(3303, 0, 5700)] == pytest.approx(23.75, abs=0.01)
        assert target.bridge.stats.dropped == 0, target.bridge.stats.summary()
    console = (tmp_path / "node1.console.log").read_text()
    assert f"sl0 ({slip_driver}) is up: address 192.0.2.2" in console
    assert "Registration Done (EP='node1')" in console


async def test_renode_keeps_its_temp_file_cleanup_to_its_own_tmpdir(
    build_firmware, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renode deletes every $TMPDIR/renode-* no live Renode owns when it starts: not the caller's."""
    shared_tmp = tmp_path / "tmp"
    precious = shared_tmp / "renode-logs"  # e.g. someone's --hil-log-dir
    precious.mkdir(parents=True)
    (precious / "keep.txt").write_text("still here")
    monkeypatch.setenv("TMPDIR", str(shared_tmp))
    async with renode_target(tmp_path / "logs", "nrf52840dk", build_firmware("nrf52840dk")) as target:
        assert target.process is not None and target.process.tmp == tmp_path / "logs" / "node1.renode-tmp"
    assert (precious / "keep.txt").read_text() == "still here"


async def test_firmware_for_another_board_fails_with_the_renode_log_cut_and_quoted(build_firmware, tmp_path: Path) -> None:
    """The mps2-an385 ELF on the nRF52840: the CPU runs away and the model warns at a huge rate."""
    target = renode_target(tmp_path, "nrf52840dk", build_firmware("mps2_an385"), boot_timeout=6)
    with pytest.raises(ConsoleTimeout) as info:
        async with target:
            pass
    message = str(info.value)
    log = tmp_path / "node1.renode.log"
    assert f"Renode log: {log}" in message and "its last warnings:" in message, message
    assert "[WARNING]" in message.split("its last warnings:")[1], message
    assert log.stat().st_size < 17_000_000, "the log is capped at 16 MB"
    if f"{log} was cut at 16 MB" in message:  # how far it gets in 6 s depends on the machine
        assert "[embserve-hil] log cut at 16 MB" in log.read_text(errors="replace")


async def deploy(gateway: Gateway, inst: int, package: bytes) -> None:
    """Object 9 as the far-edge kubelet drives it: create, write the package, install, activate."""
    await gateway.create("node1", "/9", instance_id=inst)
    await gateway.write("node1", f"/9/{inst}/2", package, fmt="opaque", timeout=20)
    await gateway.execute("node1", f"/9/{inst}/4")
    await gateway.execute("node1", f"/9/{inst}/10")


@pytest.mark.parametrize("board", sorted(M4F_BOARDS))
async def test_fpu_registers_survive_preemption_between_two_services(board: str, build_firmware, tmp_path: Path) -> None:
    """Two fpu_check services load different patterns into s0-s31 and spin through many context switches."""
    from hil.sdk import build_service

    package = build_service(FPU_CHECK, tmp_path / "fpu_check").read_bytes()
    async with Gateway(host="127.0.0.1", port=0) as gateway, renode_target(tmp_path, board, build_firmware(board)) as target:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration("node1", timeout=30)
        await deploy(gateway, 1000, package)
        await deploy(gateway, 1001, package)
        results = []
        for _ in range(2):
            match = await target.console.expect(re.compile(r"\[fpu_check\] seed (\w+) rounds (\d+) bad (\d+)"), 120)
            results.append(match.groups())
    seeds = {seed for seed, _, _ in results}
    assert len(seeds) == 2, f"two instances, two patterns: {results}"
    assert all(rounds == "40" and bad == "0" for _, rounds, bad in results), results


# -- the HIL suite, as a user runs it -------------------------------------------


def netns_with_tap_available() -> str | None:
    """Why a network namespace with a TAP device cannot be made here, or None when it can."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist"
    probe = subprocess.run(["unshare", "-rn", "ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"cannot create a TAP device in a new network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


def in_netns_with_tap(argv: list[str]) -> list[str]:
    """``argv`` inside a new network namespace with loopback up and TAP at TAP_ADDRESS/24."""
    setup = (f"ip link set lo up && ip tuntap add dev {TAP} mode tap && ip addr add {TAP_ADDRESS}/24 dev {TAP}"
             f" && ip link set {TAP} up && exec \"$@\"")
    return ["unshare", "-rn", "sh", "-c", setup, "sh", *argv]


async def run_hil_suite(board: str, out: Path, *extra: str, netns: bool = False) -> str:
    """tests/hil on Renode for ``board``, with the firmware its board file names (the reference firmware's
    build for it, from the per-user cache); the child's output, after checking all five passed and the sample bug failed."""
    argv = [sys.executable, "-m", "pytest", "tests/hil", "-q", "-p", "no:cacheprovider", "-rs", "--target", "renode",
            "--board", board, "--hil-log-dir", str(out), *extra]
    child = await asyncio.create_subprocess_exec(*(in_netns_with_tap(argv) if netns else argv), cwd=REPO,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(child.communicate(), timeout=900)
    except BaseException:
        # Interrupted (another run failed, or the timeout): SIGINT lets the child's fixtures stop its Renode.
        await stop_child(child, signal.SIGINT)
        raise
    text = output.decode(errors="replace")
    assert child.returncode == 0 and f"{HIL_PASSED} passed, 1 xfailed" in text, f"{board} {extra}: logs in {out}\n{text[-4000:]}"
    consoles = sorted(out.glob("*/node1.console.log"))
    assert len(consoles) == HIL_NODES, consoles
    return text


@pytest.mark.slow  # three suites side by side, each with four Renode boots (in virtual time: seconds, not minutes)
async def test_hil_suite_passes_on_the_m4f_boards(tmp_path: Path) -> None:
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None:
        pytest.skip("arm-none-eabi-gcc or make is not installed: cannot build the reference firmware")
    runs = [run_hil_suite("nrf52840dk", tmp_path / "nrf52840dk"), run_hil_suite("stm32f4_discovery", tmp_path / "stm32-slip")]
    why_not = netns_with_tap_available()
    if why_not is None:
        runs.append(run_hil_suite("stm32f4_discovery", tmp_path / "stm32-eth", "--renode-tap", TAP,
                                  "--gateway-listen", TAP_ADDRESS, netns=True))
    async with asyncio.TaskGroup() as group:  # one run failing interrupts the others
        for run in runs:
            group.create_task(run)
    for console in (tmp_path / "stm32-slip").glob("*/node1.console.log"):
        assert "sl0 (SLIP on USART3) is up" in console.read_text()
    if why_not is not None:
        pytest.skip(f"SLIP runs passed; the Ethernet run was not possible: {why_not}")
    for console in (tmp_path / "stm32-eth").glob("*/node1.console.log"):
        text = console.read_text()
        assert "net: eth0 (STM32F4 Ethernet MAC) up, address 10.0.2.15" in text and "net iface slip" not in text
        assert f"server_add coap://{TAP_ADDRESS}:" in text
