"""A HIL run that gets SIGTERM (a CI job's timeout, ``kill``) stops what it started.

A child pytest runs a HIL test on QEMU; once its node is up (registry, QEMU
and the gateway running), it gets SIGTERM. The plugin turns that into Ctrl-C,
so teardown runs: afterwards no process whose command line names the test's
files (the registry's configuration in the log folder, QEMU's firmware copy)
is left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from conftest import REPO, firmware_elf, stop_child, wait_until


def processes_naming(text: str) -> list[str]:
    """Command lines of the running processes that contain ``text`` (this process and its parents left out)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and " -m pytest " not in cmdline:  # the child pytest itself is watched apart
            found.append(f"{pid}: {cmdline.strip()}")
    return found


def node_is_up(logs: Path) -> bool:
    return any("uart:~$" in p.read_text(errors="replace") for p in logs.rglob("node1.console.log"))


async def test_sigterm_ends_a_hil_run_and_its_processes(tmp_path: Path, tmp_path_factory) -> None:
    firmware = tmp_path / "firmware.elf"
    shutil.copyfile(firmware_elf(tmp_path_factory), firmware)  # skips without the ARM toolchain or QEMU
    logs = tmp_path / "hil-logs"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "tests/hil/test_temperature_sensor.py", "-k", "deploy_reports",
        "--target", "qemu", "--firmware", str(firmware), "--hil-log-dir", str(logs), "-q", "-p", "no:cacheprovider",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_until(lambda: node_is_up(logs), f"the child's QEMU node to boot (logs in {logs})", timeout=120)
        started = processes_naming(str(tmp_path))
        assert any("docker-registry" in p for p in started), started
        assert any("qemu-system-arm" in p for p in started), started
        child.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(child.communicate(), 60)
    finally:
        await stop_child(child)  # this test failed first: stop the child as gently as it is tested to stop
    text = out.decode(errors="replace")
    assert child.returncode == 2, f"exit {child.returncode}, not pytest's 'interrupted':\n{text[-3000:]}"
    assert "KeyboardInterrupt" in text or "Interrupted" in text or "!!!" in text, text[-3000:]
    await wait_until(lambda: not processes_naming(str(tmp_path)),
                     f"no process of the run left; still there: {processes_naming(str(tmp_path))}", timeout=10)
