"""The HIL suite (tests/hil) on QEMU, as a user runs it: ``pytest tests/hil --target qemu``.

It runs in a child pytest, so the plugin's options, fixtures and per-test log
directories are exercised as installed, against the firmware built for this
session (``--firmware``), once with the node on QEMU's LAN9118 and once over
SLIP on UART1 through the host bridge, side by side. Through the LAN9118 in
virtual time (the default): the temperature service's first 30 s period,
which three of the four tests wait out, is idle device time the harness
skips, so the run takes about ten seconds where it took two minutes, and the
readings carry the device time they were sent at, so the suite's period
check is exact however busy the host is. Over SLIP the QEMU target keeps
real time (it cannot tell when a SLIP frame left; see
hil/targets/qemu_clock.py), and that run still takes two minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import firmware_elf, run_child_pytest

pytestmark = [pytest.mark.emulation, pytest.mark.slow]  # the SLIP run is in real time

HIL_TESTS = 6  # tests/hil: test_temperature_sensor.py (5) and test_sample_bug.py (1)
#: junit counts as skipped: the sample bug (xfail strict), and test_service_cost_is_recorded, which skips
#: before booting because QEMU records no execution metrics
SKIPPED = 2
NO_METRICS = 1  # of those, the one that boots no node
BOOT_BANNER = "*** Booting embServe reference firmware"


async def run_hil_suite(elf: Path, out_dir: Path, net: str) -> None:
    """Run tests/hil on QEMU with the node's network on ``net``; assert all but the metrics test passed and the sample bug failed."""
    logs, report = out_dir / f"hil-logs-{net}", out_dir / f"hil-{net}.xml"
    code, out = await run_child_pytest(
        ["tests/hil", "--target", "qemu", "--net", net, "--firmware", str(elf), "-q", "-p", "no:cacheprovider",
         "-rs", "--hil-log-dir", str(logs), f"--junitxml={report}", "--hil-show-readings"],
        timeout=600,
    )
    assert code == 0, f"the HIL suite failed on QEMU over {net} (exit {code}); logs in {logs}\n{out[-4000:]}"

    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None, report.read_text()[:2000]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": HIL_TESTS, "failures": 0, "errors": 0, "skipped": SKIPPED}, f"{net}: {counts}\n{out[-4000:]}"
    assert "the qemu target records no execution metrics" in out, out[-4000:]

    # What ran is in each test's JUnit properties (docs/reports.md): the firmware given, by its digest.
    firmware_sha256 = hashlib.sha256(elf.read_bytes()).hexdigest()
    for case in suite.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if case.get("name") == "test_service_cost_is_recorded":
            continue  # skipped before it booted a node: nothing ran
        assert (props["target"], props["board"], props["firmware_sha256"]) == ("qemu", "mps2_an385", firmware_sha256), props
        assert int(props["readings"]) > 0 and float(props["deploy_ms"]) > 0, props

    # Every test ran on a QEMU node: its own log directory holds the firmware's boot on the console.
    consoles = sorted(logs.glob("*/node1.console.log"))
    assert len(consoles) == HIL_TESTS - NO_METRICS, f"console logs found: {consoles}"
    for console in consoles:
        assert BOOT_BANNER in console.read_text(errors="replace"), f"{console} shows no firmware boot"
    if net == "slip":
        # The node's traffic went through the host's SLIP bridge, not QEMU's LAN9118, in real time.
        assert all((c.parent / "node1.slip.log").exists() for c in consoles), sorted(logs.glob("*/*"))
        assert not any("-icount" in (c.parent / "node1.qemu.log").read_text() for c in consoles)
        return
    # In virtual time, stepped by the harness; the rate test's readings stamped with device time, 2 s apart.
    assert all("-icount shift=5,sleep=off" in (c.parent / "node1.qemu.log").read_text() for c in consoles)
    rate = re.search(r"^test_rate_input_changes_period: .*\(value@device-time offset\): (.*)$", out, re.M)
    assert rate, f"the rate test's readings carry no device time:\n{out[-3000:]}"
    offsets = [float(x) for x in re.findall(r"@\+([\d.]+)s", rate.group(1))]
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    # QEMU stamps the frames the LAN9118 sends: the service's 2 s period, exactly.
    assert gaps[-4:] == pytest.approx([2.0] * 4, abs=0.02), f"offsets {offsets}"


async def test_hil_suite_passes_on_qemu_over_lan9118_and_over_slip(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elf = firmware_elf(tmp_path_factory)  # skips without the ARM toolchain or QEMU
    # The SLIP run waits out the service's periods in real time: run the two side by side.
    await asyncio.gather(run_hil_suite(elf, tmp_path, "eth"), run_hil_suite(elf, tmp_path, "slip"))
