"""Serial target figures: console round trip over a pty and over RFC 2217 on loopback,
and attach-to-registered time for the reference firmware over the pty.

The board is the reference firmware on QEMU mps2-an385 with its console on a
pseudo-terminal (hil.infra.qemu, console="pty"), reset through the QEMU monitor; the
RFC 2217 server (hil.infra.rfc2217) serves the same pty on loopback. Run with
``python -m benchmarks serial``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine
from hil.infra.rfc2217 import Rfc2217Server
from hil.targets.base import TargetConfig
from hil.targets.serial import SerialTarget

REPO = Path(__file__).resolve().parents[1]
ROUND_TRIPS = 200
BRING_UPS = 5


def build_firmware(into: Path) -> Path:
    run = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={into}", f"-j{os.cpu_count() or 2}"],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"firmware build failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return into / "embserve.elf"


def config(log_dir: Path, port: str, reset_command: str, endpoint: str = "node1") -> TargetConfig:
    return TargetConfig(endpoint=endpoint, log_dir=log_dir, board=get_board("mps2_an385"), serial_port=port,
                        gateway_host="10.0.2.2", options={"reset_command": reset_command})


def summary(label: str, samples: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"{label:44} median {statistics.median(ordered) * scale:8.3f} {unit}   p95 {p95 * scale:8.3f} {unit}"
            f"   (n={len(samples)})")


async def round_trips(target: SerialTarget) -> list[float]:
    """Shell command out, its output and the next prompt back."""
    await target.shell.exec("help")  # warm-up
    samples = []
    for _ in range(ROUND_TRIPS):
        start = time.perf_counter()
        await target.shell.exec("help")
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make") if shutil.which(t) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed")
        return
    with tempfile.TemporaryDirectory(prefix="bench-serial-") as tmp:
        work = Path(tmp)
        elf = build_firmware(work / "fw")
        async with QemuMachine(elf, console="pty", log_dir=work / "qemu") as board:
            assert board.pty is not None
            async with SerialTarget(config(work / "pty", board.pty, board.reset_command)) as target:
                print(summary("console round trip, pty ('help', ~170 B back)", await round_trips(target)))
            async with Rfc2217Server(board.pty) as server:
                async with SerialTarget(config(work / "rfc2217", server.url, board.reset_command)) as target:
                    print(summary("console round trip, RFC 2217 on loopback", await round_trips(target)))

            attach, registered = [], []
            async with Gateway(host="127.0.0.1", port=0) as gateway:
                for i in range(BRING_UPS):
                    endpoint = f"bench{i}"
                    start = time.perf_counter()
                    target = SerialTarget(config(work / "bring-up", board.pty, board.reset_command, endpoint))
                    async with target:
                        attach.append(time.perf_counter() - start)
                        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
                        await gateway.wait_for_registration(endpoint, timeout=15)
                        registered.append(time.perf_counter() - start)
            resets = []
            for _ in range(BRING_UPS):
                start = time.perf_counter()
                subprocess.run(board.reset_command, shell=True, check=True)
                resets.append(time.perf_counter() - start)
            print(summary("attach + reset + boot to prompt, pty", attach))
            print(summary("attach to bootstrapped and registered, pty", registered))
            print(summary("  of which the reset command alone", resets))
