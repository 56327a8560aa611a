"""The HIL suite (tests/hil) on QEMU, as a user runs it: ``pytest tests/hil --target qemu``.

It runs in a child pytest, so the plugin's options, fixtures and per-test log
directories are exercised as installed, against the firmware built for this
session (``--firmware``). About two minutes: the temperature service's first
30 s period passes in real time on QEMU, in three of the four tests.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from qemu_helpers import firmware_elf, run_child_pytest

pytestmark = [pytest.mark.emulation, pytest.mark.slow]

HIL_TESTS = 4  # tests/hil/test_temperature_sensor.py
BOOT_BANNER = "*** Booting embServe reference firmware"


async def test_hil_suite_passes_on_qemu(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elf = firmware_elf(tmp_path_factory)  # skips without the ARM toolchain or QEMU
    logs, report = tmp_path / "hil-logs", tmp_path / "hil.xml"
    code, out = await run_child_pytest(
        ["tests/hil", "--target", "qemu", "--firmware", str(elf), "-q", "-p", "no:cacheprovider", "-rs",
         "--hil-log-dir", str(logs), f"--junitxml={report}"],
        timeout=600,
    )
    assert code == 0, f"the HIL suite failed on QEMU (exit {code}); logs in {logs}\n{out[-4000:]}"

    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None, report.read_text()[:2000]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": HIL_TESTS, "failures": 0, "errors": 0, "skipped": 0}, f"{counts}\n{out[-4000:]}"

    # Every test ran on a QEMU node: its own log directory holds the firmware's boot on the console.
    consoles = sorted(logs.glob("*/node1.console.log"))
    assert len(consoles) == HIL_TESTS, f"console logs found: {consoles}"
    for console in consoles:
        assert BOOT_BANNER in console.read_text(errors="replace"), f"{console} shows no firmware boot"
