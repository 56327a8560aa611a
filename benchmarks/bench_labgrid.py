"""Benches shared through labgrid: acquire → prompt through a place vs. a direct pty, and the HIL suite on one
bench vs. two benches with ``-n 2``.

The lab is :class:`hil.infra.lab.LocalLab` on loopback: a real labgrid
coordinator, an exporter per bench, the reference firmware on QEMU with its
console on a pty served by ser2net over RFC 2217, power through the QEMU
monitor. Run with ``python -m benchmarks labgrid`` (about 5 minutes: the
suite waits out the service's 30 s period in real time).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hil.boards import get_board
from hil.infra.lab import LocalLab
from hil.reference_firmware import reference_firmware
from hil.targets.base import TargetConfig
from hil.targets.labgrid import LabgridTarget
from hil.targets.labgrid_place import LeaseSpec, PlaceLease
from hil.targets.serial import SerialTarget

from .bench_serial import summary

BRING_UPS = 5


def board_config(log_dir: Path, **options: object) -> TargetConfig:
    return TargetConfig(endpoint="node1", log_dir=log_dir, board=get_board("mps2_an385"), options=dict(options))


async def acquire_to_prompt(lab: LocalLab, work: Path) -> tuple[list[float], list[float]]:
    """From asking the coordinator for bench-a to the shell prompt; and of that, the acquire alone."""
    total, acquire = [], []
    for i in range(BRING_UPS):
        start = time.perf_counter()
        lease = PlaceLease(LeaseSpec(place="bench-a", coordinator=lab.coordinator_url, log_dir=work))
        await asyncio.to_thread(lease.acquire)
        acquire.append(time.perf_counter() - start)
        try:
            async with LabgridTarget(board_config(work / f"lg{i}", labgrid_place=lease)):
                total.append(time.perf_counter() - start)
        finally:
            await asyncio.to_thread(lease.release)
    return total, acquire


async def pty_to_prompt(lab: LocalLab, work: Path) -> list[float]:
    """The same board, its pty opened directly, reset through the QEMU monitor."""
    qemu = lab.bench("bench-a").qemu
    samples = []
    for i in range(BRING_UPS):
        start = time.perf_counter()
        config = board_config(work / f"pty{i}", reset_command=qemu.reset_command)
        config.serial_port = qemu.pty
        async with SerialTarget(config):
            samples.append(time.perf_counter() - start)
    return samples


def suite_wall_time(lab: LocalLab, work: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_")} | {"LG_COORDINATOR": lab.coordinator_url}
    argv = [sys.executable, "-m", "pytest", "--pyargs", "hil.suites.temperature", "-q", "-p", "no:cacheprovider",
            "-W", "ignore::DeprecationWarning", "--gateway-host", "10.0.2.2",
            "--hil-log-dir", str(work / "-".join(a.strip("-*'") for a in args)), *args]
    start = time.perf_counter()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, cwd=work)
    elapsed = time.perf_counter() - start
    lines = run.stdout.strip().splitlines()
    if run.returncode not in (0, 1) or not lines:  # 1: tests failed, still a figure (the summary line says which)
        raise RuntimeError(f"{' '.join(argv)} did not run:\n{run.stdout[-3000:]}")
    return elapsed, lines[-1].strip("= ")


async def main() -> None:
    missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make") if shutil.which(t) is None]
    if missing or not Path("/usr/sbin/ser2net").exists():
        print(f"skipped: {', '.join(missing) or 'ser2net'} not installed")
        return
    firmware = await asyncio.to_thread(reference_firmware)
    with tempfile.TemporaryDirectory(prefix="bench-labgrid-") as tmp:
        work = Path(tmp)
        async with LocalLab(firmware, log_dir=work / "lab") as lab:
            total, acquire = await acquire_to_prompt(lab, work)
            print(summary("acquire -> prompt through labgrid (bench-a)", total))
            print(summary("  of which connect + reserve + acquire", acquire))
            print(summary("open pty -> reset -> prompt, same board", await pty_to_prompt(lab, work)))
            one, line = await asyncio.to_thread(suite_wall_time, lab, work, "--lg-place", "bench-a")
            print(f"{'HIL suite, one bench (--lg-place bench-a)':44} {one:8.1f} s   ({line})")
            two, line = await asyncio.to_thread(suite_wall_time, lab, work, "-n", "2", "--lg-place", "bench-*")
            print(f"{'HIL suite, two benches (-n 2, bench-*)':44} {two:8.1f} s   ({line})")
