"""Issue 6: the reference firmware on QEMU, through the harness (QEMU target, deployer).

What a HIL test on ``--target qemu`` pays, measured on the path it takes:

* QEMU process start -> registered: :class:`QemuTarget` boots the board,
  waits for the prompt and types the bootstrap command; the clock starts just
  before QEMU is spawned and stops when the gateway holds the registration
  (split at the shell prompt). Also ``kernel reboot`` -> registered again (the
  target restarts QEMU and repeats the bootstrap).
* deploy -> first reading: :meth:`Deployer.deploy` of the project's
  temperature service (and FITA's when ../shared is present) from bytes, by
  step, then activate -> first reading notified on /3303/0/5700.
* shell round trip: ``kernel uptime`` through the console socket.
* flash and RAM footprint, from the firmware build's size report.

The aim (issue 6): registered within 1 s of process start, first reading
within 1 s of activate. Raw figures below the harness (QEMU started by hand,
LwM2M read round trips, the Block1 write alone) are in
``bench_firmware_lwm2m``; the runtime's own costs in ``bench_firmware_runtime``.

    python -m benchmarks qemu
    BENCH_BOOTS=10 BENCH_SHELL=500 python -m benchmarks qemu
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath

from hil.faredge.channels import LwM2MChannel
from hil.faredge.deployer import Deployer
from hil.gateway.server import Gateway
from hil.sdk import build_service
from hil.targets.base import TargetConfig
from hil.targets.qemu import QemuTarget

REPO = FsPath(__file__).resolve().parents[1]
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
AIM_S = 1.0
_FOOTPRINT = re.compile(r"^\s*(flash|RAM)\s+(\d+) B\s+\((.*)\)\s*$", re.MULTILINE)


def build_firmware(out: FsPath) -> tuple[FsPath, dict[str, tuple[int, str]]]:
    """The ELF and its footprint: {"flash"|"RAM": (bytes, breakdown)} from the Makefile's size report."""
    run = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={out}", f"-j{os.cpu_count() or 2}"],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"firmware build failed:\n{run.stdout}\n{run.stderr}")
    footprint = {m.group(1): (int(m.group(2)), m.group(3)) for m in _FOOTPRINT.finditer(run.stdout)}
    if set(footprint) != {"flash", "RAM"}:
        sys.exit(f"no footprint in the build output:\n{run.stdout}")
    return out / "embserve.elf", footprint


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"median {ms(statistics.median(ordered))}, max {ms(ordered[-1])} ({len(ordered)} runs)"


def verdict(values: list[float]) -> str:
    return "meets the 1 s aim" if max(values) <= AIM_S else f"MISSES the 1 s aim (worst {ms(max(values))})"


class ActivateClock(LwM2MChannel):
    """The LwM2M channel, noting when Activate is sent."""

    activate_sent = 0.0

    async def activate(self, endpoint: str, instance: int) -> None:
        self.activate_sent = time.perf_counter()
        await super().activate(endpoint, instance)


async def boot(elf: FsPath, gw: Gateway, log_dir: FsPath, endpoint: str) -> tuple[QemuTarget, float, float]:
    """A registered QEMU target; seconds from QEMU spawn to the prompt and to the registration."""
    target = QemuTarget(TargetConfig(endpoint=endpoint, log_dir=log_dir, firmware=elf))
    await target.__aenter__()
    try:
        assert target.qemu is not None and target.qemu.started_at is not None
        prompt = time.monotonic() - target.qemu.started_at
        await target.bootstrap(target.device_server_uri(gw.host, gw.port))
        await gw.wait_for_registration(endpoint, timeout=10)
        return target, prompt, time.monotonic() - target.qemu.started_at
    except BaseException:
        await target.__aexit__(None, None, None)
        raise


async def reboot_to_registered(target: QemuTarget, gw: Gateway) -> float:
    async with gw.subscribe() as events:
        start = time.monotonic()
        await target.console.send_line("kernel reboot")
        while True:
            event = await events.get(timeout=15)
            if event.endpoint == target.endpoint and event.kind == "registered":
                break
    return time.monotonic() - start


async def deploy_to_first_reading(gw: Gateway, endpoint: str, package: bytes) -> dict[str, float]:
    channel = ActivateClock(gw)
    async with Deployer(gw, channel=channel) as deployer:
        # Observe first: the next notification is the service's first output
        # (outputs notify even when the value is unchanged).
        observation = await gw.observe(endpoint, "/3303/0/5700")
        arrived = asyncio.Event()
        arrivals: list[float] = []

        def on_reading(_notification: object) -> None:
            arrivals.append(time.perf_counter())
            arrived.set()

        observation.add_listener(on_reading)
        start = time.perf_counter()
        deployment = await deployer.deploy(package, endpoint)
        await asyncio.wait_for(arrived.wait(), 10)
        observation.cancel()
        steps = {k: v for k, v in deployment.steps.items() if k not in ("fetch", "validate")}
        steps["activate -> first reading"] = arrivals[0] - channel.activate_sent
        steps["deploy() -> first reading"] = arrivals[0] - start
        await deployer.remove(endpoint, deployment)
    return steps


async def main() -> None:
    boots = int(os.environ.get("BENCH_BOOTS", "5"))
    shell_runs = int(os.environ.get("BENCH_SHELL", "200"))
    deploys = int(os.environ.get("BENCH_DEPLOYS", "5"))
    with tempfile.TemporaryDirectory(prefix="bench-qemu-") as tmp:
        tmpdir = FsPath(tmp)
        elf, footprint = build_firmware(tmpdir / "build")
        for region, (size, detail) in footprint.items():
            print(f"footprint {region}: {size} B = {size / 1024:.1f} KiB ({detail})")
        packages = {"project": build_service(REPO / "services" / "temperature_sensor", tmpdir / "service").read_bytes()}
        if FITA_SERVICE.is_file():
            packages["FITA"] = FITA_SERVICE.read_bytes()
        else:
            print(f"FITA's service not measured: {FITA_SERVICE} not available")

        async with Gateway(host="127.0.0.1", port=0) as gw:
            prompts, registered = [], []
            for i in range(boots):
                target, prompt, reg = await boot(elf, gw, tmpdir / f"boot{i}", f"bench{i}")
                await target.__aexit__(None, None, None)
                prompts.append(prompt)
                registered.append(reg)
            print(f"QEMU start -> shell prompt: {spread(prompts)}")
            print(f"QEMU start -> registered: {spread(registered)}; {verdict(registered)}")

            target, _, _ = await boot(elf, gw, tmpdir / "node", "node1")
            try:
                reboots = [await reboot_to_registered(target, gw) for _ in range(3)]
                print(f"'kernel reboot' -> registered again (QEMU restarted, bootstrap repeated): {spread(reboots)}")

                rtts = []
                for _ in range(shell_runs):
                    start = time.perf_counter()
                    await target.shell.exec("kernel uptime")
                    rtts.append(time.perf_counter() - start)
                rtts.sort()
                print(f"shell round trip ('kernel uptime', {shell_runs}x): median {ms(statistics.median(rtts))}, "
                      f"p95 {ms(rtts[int(0.95 * len(rtts))])}")

                await target.set_sensor("temperature", 21.5)
                for name, package in packages.items():
                    rounds = [await deploy_to_first_reading(gw, "node1", package) for _ in range(deploys)]
                    by_step = {step: [r[step] for r in rounds] for step in rounds[0]}
                    shown = ", ".join(f"{step} {ms(statistics.median(v))}" for step, v in by_step.items())
                    first = by_step["activate -> first reading"]
                    print(f"{name} service ({len(package)} B), median of {deploys}: {shown}")
                    print(f"{name} service: activate -> first reading {spread(first)}; {verdict(first)}")
            finally:
                await target.__aexit__(None, None, None)


if __name__ == "__main__":
    asyncio.run(main())
