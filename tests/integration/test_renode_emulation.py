"""The Renode target on a real Renode: the reference firmware on the project's MPS2 AN385 platform.

Renode cannot be installed on the project's own machines, so these tests
skip there (marker ``requires_renode``); with ``renode`` on PATH they boot the
same ELF that runs on QEMU, on renode/mps2_an385.repl, and the node registers
to the gateway over SLIP on UART1 (Renode has no LAN9118 model).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from conftest import firmware_elf as build_firmware

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.lwm2m.model import Path as LwPath
from hil.targets.base import TargetConfig, TargetError
from hil.targets.renode import RenodeTarget

pytestmark = [pytest.mark.emulation, pytest.mark.requires_renode]


@pytest.fixture(scope="module")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_firmware(tmp_path_factory, qemu=False)  # once per session; skips without the ARM toolchain


def renode_target(tmp_path: Path, firmware: Path) -> RenodeTarget:
    return RenodeTarget(TargetConfig(endpoint="node1", log_dir=tmp_path, board=get_board("mps2_an385"), firmware=firmware))


async def test_reference_firmware_boots_to_its_shell_on_renode(firmware_elf: Path, tmp_path: Path) -> None:
    async with renode_target(tmp_path, firmware_elf) as target:
        lines = await target.shell.exec("help")
        assert any(line.split()[:1] == ["sensor"] for line in lines), lines
        await target.set_sensor("temperature", 22.5)
        before = await target.clock.device_time()
        await target.sleep_device(1.0)  # on the device's clock (no gateway to watch: at the host's pace)
        assert await target.clock.device_time() - before >= 1.0
        assert (await target.shell.exec("help")) == lines  # the machine runs on
    console = (tmp_path / "node1.console.log").read_text()
    assert "*** Booting embServe reference firmware" in console


async def test_reference_firmware_registers_over_slip_on_renode(firmware_elf: Path, tmp_path: Path) -> None:
    async with Gateway(host="127.0.0.1", port=0) as gateway, renode_target(tmp_path, firmware_elf) as target:
        assert target.net == "slip"  # Renode has no LAN9118: UART1 on a socket terminal, through the SLIP bridge
        uri = target.device_server_uri(gateway.host, gateway.port)
        assert uri == f"coap://192.0.2.1:{gateway.port}"
        await target.bootstrap(uri)
        registration = await gateway.wait_for_registration("node1", timeout=30)
        assert [flow.local for flow in target.bridge.flows] == [registration.address]
        assert (await gateway.read("node1", "/3/0/1"))[LwPath(3, 0, 1)] == "mps2-an385"
        assert target.bridge.stats.dropped == 0, target.bridge.stats.summary()
    console = (tmp_path / "node1.console.log").read_text()
    assert "sl0 (SLIP on UART1) is up: address 192.0.2.2" in console
    assert "Registration Done (EP='node1')" in console


async def test_reboot_on_renode_registers_again(firmware_elf: Path, tmp_path: Path) -> None:
    """Under virtual time every boot is the same; only the boot counter in .noinit RAM gives the
    Register after a warm reset a new message ID and token, so the gateway sees a new registration."""
    async with Gateway(host="127.0.0.1", port=0) as gateway, renode_target(tmp_path, firmware_elf) as target:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        first = await gateway.wait_for_registration("node1", timeout=30)
        async with gateway.subscribe() as events:
            await target.reboot()
            seen = []
            while not any(e.kind == "registered" for e in seen):
                seen.append(await events.get(timeout=30))
        again = gateway.registration("node1")
        assert again.registration_id != first.registration_id, seen
        assert (await gateway.read("node1", "/3/0/1"))[LwPath(3, 0, 1)] == "mps2-an385"
    console = (tmp_path / "node1.console.log").read_text()
    assert "boot 1 since power-up" in console and "boot 2 since power-up" in console, console[-2000:]
    assert console.count("Registration Done (EP='node1')") == 2


async def test_ethernet_without_a_network_model_is_refused(firmware_elf: Path, tmp_path: Path) -> None:
    target = RenodeTarget(TargetConfig(endpoint="node1", log_dir=tmp_path, board=get_board("mps2_an385"),
                                       firmware=firmware_elf, options={"net": "eth"}))
    async with target:
        with pytest.raises(TargetError, match="no Ethernet model on Renode"):
            await target.bootstrap("coap://127.0.0.1:5683")


def test_hil_suite_passes_on_renode_in_virtual_time(firmware_elf: Path, tmp_path: Path) -> None:
    """The suite as a user runs it; the service's 30 s sleeps are skipped, its readings stamped inside Renode."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hil", "-q", "-p", "no:cacheprovider", "-rs", "--target", "renode",
         "--board", "mps2_an385", "--firmware", str(firmware_elf), "--hil-log-dir", str(tmp_path / "hil-logs"),
         "--hil-show-readings"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    # five, and the sample bug failing as it should: the fifth records the service's cost, which Renode's
    # profiler gives (targets without metrics skip it)
    assert run.returncode == 0 and "5 passed, 1 xfailed" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]
    rate = re.search(r"^test_rate_input_changes_period: .*\(value@device-time offset\): (.*)$", run.stdout, re.M)
    assert rate, run.stdout[-3000:]
    offsets = [float(x) for x in re.findall(r"@\+([\d.]+)s", rate.group(1))]
    assert [b - a for a, b in zip(offsets, offsets[1:])][-4:] == pytest.approx([2.0] * 4, abs=0.02), offsets
