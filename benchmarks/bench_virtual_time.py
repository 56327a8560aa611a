"""Virtual time on the emulators: the HIL suite's wall time per target, and idle device time per wall second.

1. ``pytest -m hil tests/hil --target T`` in a child process, for the
   simulator, QEMU (virtual time, and ``--device-time real``) and Renode
   (both, where ``renode`` is on PATH or in ``$RENODE``): its wall time,
   four tests with one boot each.
2. Device seconds per wall second while the temperature service sleeps
   (its first 30 s period), with the gateway watching and nothing in flight:
   the node boots, registers, gets the service over object 9, and the
   device's clock is read over 3 s of waiting. For QEMU also the worst
   overrun (device time a slice ran past its end before the harness could
   stop it) seen in that run.

    python -m benchmarks virtual_time
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.targets.base import Target, TargetConfig, get_target_class

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "services" / "temperature_sensor"
WAIT = 3.0


def renode_available() -> bool:
    return shutil.which("renode") is not None or bool(os.environ.get("RENODE"))


async def suite_wall(target: str, *extra: str) -> tuple[float, str]:
    start = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-m", "hil", "tests/hil", "-q", "-p", "no:cacheprovider", "--target", target,
        *extra, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await child.communicate()
    lines = output.decode(errors="replace").strip().splitlines()
    return time.perf_counter() - start, lines[-1] if lines else "(no output)"


async def idle_speed(backend: str, board: str, package: bytes) -> tuple[float, str]:
    """Device seconds per wall second while the service sleeps; and a note."""
    with_logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-virtual-time-{backend}-{os.getpid()}"
    async with Gateway(host="127.0.0.1", port=0) as gateway:
        config = TargetConfig(endpoint="node1", log_dir=with_logs, board=get_board(board))
        target: Target = get_target_class(backend)(config)
        async with target:
            assert target.clock is not None, f"{backend}: no virtual time"
            target.govern_time(gateway.in_flight)
            await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
            await gateway.wait_for_registration("node1", timeout=60)
            await gateway.create("node1", "/9", instance_id=1000)
            await gateway.write("node1", "/9/1000/2", package, fmt="opaque", timeout=30)
            await gateway.execute("node1", "/9/1000/4")
            await gateway.execute("node1", "/9/1000/10")
            await asyncio.sleep(0.3)  # the service's first reading goes out; then it sleeps 30 s
            before, wall = await target.clock.device_time(), time.perf_counter()
            await asyncio.sleep(WAIT)
            after, elapsed = await target.clock.device_time(), time.perf_counter() - wall
            note = f"overrun up to {target.clock.overrun:.2f} s" if hasattr(target.clock, "overrun") else "stamped inside Renode"
    shutil.rmtree(with_logs, ignore_errors=True)
    return (after - before) / elapsed, note


async def main() -> None:
    from hil.sdk import build_service

    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    runs = [("sim", ()), ("qemu", ()), ("qemu", ("--device-time", "real"))]
    if renode_available():
        runs += [("renode", ()), ("renode", ("--device-time", "real"))]
    else:
        print("renode is not on PATH (nor in $RENODE): no Renode figures")
    print("HIL suite (tests/hil, one boot per test), wall seconds:")
    for target, extra in runs:
        seconds, summary = await suite_wall(target, *extra)
        print(f"  --target {target:6} {' '.join(extra):20} {seconds:6.1f} s   ({summary})")
    package = build_service(SERVICE, Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-vt-service-{os.getpid()}").read_bytes()
    print(f"device seconds per wall second while the service sleeps ({WAIT:g} s of waiting):")
    speeds = [("qemu", "mps2_an385")] + ([("renode", "mps2_an385"), ("renode", "nrf52840dk"),
                                          ("renode", "stm32f4_discovery")] if renode_available() else [])
    for backend, board in speeds:
        speed, note = await idle_speed(backend, board, package)
        print(f"  {backend:6} {board:18} {speed:6.1f} x   ({note})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
