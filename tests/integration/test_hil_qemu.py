"""The HIL suite (tests/hil) on QEMU, as a user runs it: ``pytest tests/hil --target qemu``.

It runs in a child pytest, so the plugin's options, fixtures and per-test log
directories are exercised as installed, against the firmware built for this
session (``--firmware``), once with the node on QEMU's LAN9118 and once over
SLIP on UART1 through the host bridge. About two minutes: the temperature
service's first 30 s period passes in real time on QEMU, in three of the four
tests, and the two runs go side by side.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import firmware_elf, run_child_pytest

pytestmark = [pytest.mark.emulation, pytest.mark.slow]

HIL_TESTS = 5  # tests/hil/test_temperature_sensor.py
NO_METRICS = 1  # test_service_cost_is_recorded: QEMU records no execution metrics, so it skips before booting
BOOT_BANNER = "*** Booting embServe reference firmware"


async def run_hil_suite(elf: Path, out_dir: Path, net: str) -> None:
    """Run tests/hil on QEMU with the node's network on ``net``; assert all but the metrics test passed on QEMU."""
    logs, report = out_dir / f"hil-logs-{net}", out_dir / f"hil-{net}.xml"
    code, out = await run_child_pytest(
        ["tests/hil", "--target", "qemu", "--net", net, "--firmware", str(elf), "-q", "-p", "no:cacheprovider",
         "-rs", "--hil-log-dir", str(logs), f"--junitxml={report}"],
        timeout=600,
    )
    assert code == 0, f"the HIL suite failed on QEMU over {net} (exit {code}); logs in {logs}\n{out[-4000:]}"

    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None, report.read_text()[:2000]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": HIL_TESTS, "failures": 0, "errors": 0, "skipped": NO_METRICS}, f"{net}: {counts}\n{out[-4000:]}"
    assert "the qemu target records no execution metrics" in out, out[-4000:]

    # Every test ran on a QEMU node: its own log directory holds the firmware's boot on the console.
    consoles = sorted(logs.glob("*/node1.console.log"))
    assert len(consoles) == HIL_TESTS - NO_METRICS, f"console logs found: {consoles}"
    for console in consoles:
        assert BOOT_BANNER in console.read_text(errors="replace"), f"{console} shows no firmware boot"
    if net == "slip":
        # The node's traffic went through the host's SLIP bridge, not QEMU's LAN9118.
        assert all((c.parent / "node1.slip.log").exists() for c in consoles), sorted(logs.glob("*/*"))


async def test_hil_suite_passes_on_qemu_over_lan9118_and_over_slip(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elf = firmware_elf(tmp_path_factory)  # skips without the ARM toolchain or QEMU
    # Both runs spend most of their time waiting out the service's first period: run them side by side.
    await asyncio.gather(run_hil_suite(elf, tmp_path, "eth"), run_hil_suite(elf, tmp_path, "slip"))
