"""Issue 20: fleets of QEMU nodes as IoTNetEMU runs them, on a bridge in the fleet's network namespace.

* fleet start -> all registered, for BENCH_FLEET_SIZES nodes (default 5,20,50):
  the clock starts before ``Fleet.__aenter__`` (namespace, bridge, broker,
  gateway, one TAP and one QEMU per node, address and bootstrap typed into
  each shell) and stops when the gateway holds every registration.
* idle CPU per QEMU node: BENCH_IDLE_NODES registered nodes (default 10) with
  nothing to do, CPU time of their QEMU processes over BENCH_IDLE_SECONDS
  (default 20), for QEMU's own options (none, ``-icount shift=auto``, one TCG
  thread) on the reference firmware.
* readings sustained: BENCH_READINGS_NODES nodes (default 50) each running the
  temperature service at its 30 s period for BENCH_READINGS_SECONDS (default
  150): readings per second at the gateway's SDF/MQTT bridge, readings per
  node against what the period allows, and the CPU the whole run took.

Without the privileges for a network namespace the fleet falls back to user
networking, and the figures say so. BENCH_FLEET_IMAGE runs another firmware
ELF instead of the reference firmware (e.g. an older build, for before/after
figures); BENCH_FLEET_PARTS picks parts (default start,idle,readings). Run it when the machine is otherwise
idle; the load average before and after is printed.

    python -m benchmarks fleet
    BENCH_FLEET_SIZES=5,20,50,100 BENCH_READINGS_NODES=100 python -m benchmarks fleet
    BENCH_FLEET_PARTS=idle BENCH_FLEET_IMAGE=/tmp/old/embserve.elf python -m benchmarks fleet
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from hil.fleet import Fleet, parse_fleet
from hil.reference_firmware import reference_firmware
from hil.sdk import build_service

REPO = Path(__file__).resolve().parents[1]
PERIOD_S = 30.0  # the temperature service's default period


def env_ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


def fleet_doc(count: int, services: list[str] | None = None) -> dict:
    return {
        "nodes": {
            f"n{{1..{count}}}": {
                "type": "zephyr", "image": "images/embserve.elf",
                "bootstrap": [f"embserve connector lwm2m server_add coap://10.10.0.1:5683 n{{1..{count}}}"],
                "networks": {"lan": {}},
                **({"services": services} if services else {}),
            }
        },
        "networks": {"lan": {"type": "linux-br", "host_address": "10.10.0.1/16"}},
    }


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(fields[3]) + int(fields[4])
    return (sum(int(f) for f in fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_mib(pids: list[int]) -> float:
    return sum(int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") for p in pids) / len(pids) / 2**20


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def qemu_pids(fleet: Fleet) -> list[int]:
    return [t.qemu.pid for t in fleet.targets.values() if t.qemu is not None and t.qemu.pid]


async def start_to_registered(base: Path, count: int) -> None:
    t0 = time.perf_counter()
    async with Fleet(parse_fleet(fleet_doc(count), "bench", base=base), log_dir=base / f"logs-{count}") as fleet:
        started = time.perf_counter()
        await fleet.wait_registered(300)
        done = time.perf_counter()
        where = f"namespace {fleet.network.namespace.name}" if fleet.network.in_namespace else f"user networking ({fleet.network.fallback})"
    print(f"  {count:4d} QEMU nodes: start -> all registered {done - t0:6.2f} s (fleet up {started - t0:.2f} s); {where}")


async def idle_cpu(base: Path, count: int, seconds: float) -> None:
    variants = {
        "no options": {},
        "-icount shift=auto": {"qemu_icount": "shift=auto"},
        "-accel tcg,thread=single": {"qemu_extra_args": ["-accel", "tcg,thread=single"]},
    }
    for label, options in variants.items():
        async with Fleet(parse_fleet(fleet_doc(count), "bench", base=base), log_dir=base / "logs-idle",
                         emulator_options=options) as fleet:
            await fleet.wait_registered(300)
            pids = qemu_pids(fleet)
            await asyncio.sleep(3)
            c0, t0 = cpu_seconds(pids), time.monotonic()
            await asyncio.sleep(seconds)
            c1, t1 = cpu_seconds(pids), time.monotonic()
            print(f"  {label:26s} idle CPU per node {100 * (c1 - c0) / (t1 - t0) / count:5.2f}% of a core,"
                  f" RSS {rss_mib(pids):.0f} MiB ({count} nodes, {seconds:g} s, load {load()})")


async def sustained_readings(base: Path, count: int, seconds: float) -> None:
    service = build_service(REPO / "services" / "temperature_sensor", base / "service")
    t0 = time.perf_counter()
    async with Fleet(parse_fleet(fleet_doc(count, [str(service)]), "bench", base=base), log_dir=base / "logs-readings") as fleet:
        await fleet.wait_registered(300)
        registered = time.perf_counter()
        deployed = await fleet.deploy_services(300)
        by_node = fleet.bridge.stats.readings_by_endpoint
        deadline = time.monotonic() + 120
        while sum(1 for n in fleet.node_names if by_node.get(n)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        first = time.perf_counter()
        print(f"  {count} nodes: registered {registered - t0:.1f} s, {deployed} services deployed and a first reading"
              f" from {sum(1 for n in fleet.node_names if by_node.get(n))} nodes {first - t0:.1f} s after start")
        start_counts = {n: by_node.get(n, 0) for n in fleet.node_names}
        pids = qemu_pids(fleet)
        q0, m0, p0, w0 = cpu_seconds(pids), machine_cpu_seconds(), time.process_time(), time.monotonic()
        fleet.summary()
        await asyncio.sleep(seconds)
        summary = fleet.summary()
        q1, m1, p1, w1 = cpu_seconds(pids), machine_cpu_seconds(), time.process_time(), time.monotonic()
        got = {n: by_node.get(n, 0) - start_counts[n] for n in fleet.node_names}
        expected = seconds / PERIOD_S
        short = sorted(n for n, k in got.items() if k < int(expected))
        wall = w1 - w0
        print(f"  readings sustained over {wall:.0f} s: {sum(got.values()) / wall:.2f}/s (the summary: {summary.line()});"
              f" per node {min(got.values())}-{max(got.values())} (the 30 s period allows {expected:.1f});"
              f" nodes short of {int(expected)}: {len(short)}{' ' + ', '.join(short[:5]) if short else ''}")
        print(f"  CPU meanwhile: QEMU {100 * (q1 - q0) / wall / count:.2f}% of a core per node,"
              f" harness (gateway, bridge, consoles) {100 * (p1 - p0) / wall:.1f}%, whole machine"
              f" {100 * (m1 - m0) / wall:.0f}% of {os.cpu_count()} cores (others' work included); load {load()}")


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    (base / "images").mkdir()
    image = Path(os.environ.get("BENCH_FLEET_IMAGE") or reference_firmware())
    shutil.copy(image, base / "images" / "embserve.elf")
    parts = os.environ.get("BENCH_FLEET_PARTS", "start,idle,readings").split(",")
    print(f"image {image}; load average before: {load()} on {os.cpu_count()} cores")
    try:
        if "start" in parts:
            print("fleet start -> all registered (the nodes' own image, on their network):")
            for count in env_ints("BENCH_FLEET_SIZES", "5,20,50"):
                await start_to_registered(base, count)
        if "idle" in parts:
            print("idle CPU per QEMU node, by QEMU's options:")
            await idle_cpu(base, env_ints("BENCH_IDLE_NODES", "10")[0], float(os.environ.get("BENCH_IDLE_SECONDS", "20")))
        if "readings" in parts:
            print("temperature service on every node, 30 s period:")
            for count in env_ints("BENCH_READINGS_NODES", "50"):
                await sustained_readings(base, count, float(os.environ.get("BENCH_READINGS_SECONDS", "150")))
    finally:
        print(f"load average after: {load()}")
        shutil.rmtree(base, ignore_errors=True)
