"""Issue 21: execution metrics: how fast Renode's profiler file is read, and what counting costs the simulator.

1. Reading the profiler's file (hil.metrics.ProfileReader, 1 MB chunks):
   MB/s and entries/s, best of BENCH_REPEATS passes, and the peak memory the
   parser allocates (tracemalloc, one more pass), on
   a. a file a real Renode wrote: the reference firmware on renode/mps2_an385.repl,
      profiler on from power-on, BENCH_RENODE_SECONDS (10) of virtual time
      (boot included); also how fast Renode wrote it (MB per wall second), the
      rate the reader must keep up with. Only with Renode (renode on PATH or $RENODE);
   b. a synthetic file of BENCH_PROFILE_MB (64) with the mix of entries of a
      running node (measured on Renode 1.16.1: per second of virtual time ~10,000
      instructions entries, ~19,000 memory, ~1,000 exceptions, ~400 peripheral).
2. The simulator, the temperature service at a 1 s period on a manual clock, metering off and on:
   a. bare runtime wake-ups (ServiceRuntime alone): both variants in one fresh
      process, each with its own emulator, in alternating batches
      (BENCH_BATCHES, 40, of BENCH_BATCH, 1,000 wake-ups): CPU us per wake
      through the manual clock, and per wake-up alone (the service resumed
      directly, no clock: the emulation and the SDK calls, where metering adds
      its work). The cost of "on" is the median of the paired batches' ratios:
      neighbouring batches meet the same disturbances of a shared machine;
   b. a whole node (LwM2M to an in-process gateway, registration Updates
      included; bench_services.virtual_run): one simulated hour per run,
      BENCH_ROUNDS (9) runs per variant alternating, CPU per reading; cost as in a.
   With BENCH_BASELINE=<a checkout of another revision>, 2a also runs that
   tree's runtime (metering did not exist there) against this one's, metering
   off, in alternating processes (unpaired: medians): what off costs.

    python -m benchmarks metrics
    BENCH_BASELINE=/tmp/main python -m benchmarks metrics
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.bench_services import SERVICE_DIR, env_ints, env_seconds, load_average, virtual_run
from hil.infra.process import MissingBinaryError
from hil.infra.renode import RenodeMonitor, RenodeProcess, renode_binary
from hil.metrics import ProfileParser, ProfileReader
from hil.reference_firmware import reference_firmware
from hil.resources import renode_dir
from hil.sdk import build_service

REPO = Path(__file__).resolve().parents[1]
HOUR = 3600.0

# The bare runtime, metering off and on side by side in one interpreter (a fresh one, with a given tree on
# sys.path): each variant its own emulator and manual clock, measured in alternating batches, so that both
# meet the same disturbances of a shared machine and each batch of "on" has its neighbour of "off" to compare with.
WAKES = r"""
import asyncio, json, sys, time
from hil.device.clock import VirtualClock
from hil.service.cpu import Machine
from hil.service.manifest import parse_manifest
from hil.service.runtime import ServiceRuntime
package, batches, batch, variants = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
manifest = parse_manifest(open(package, "rb").read())

def node(metered):
    extra = {}
    if metered:
        from hil.service.metering import ServiceMeters
        extra["meters"] = ServiceMeters()
    clock = VirtualClock(realtime=False)
    runtime = ServiceRuntime("bench", clock, console=lambda *a: None, sensors=lambda kind: 21.5,
                             on_output=lambda *a: None, on_fault=lambda service, message: sys.exit(message),
                             machine=Machine(), **extra)
    service = runtime.load(manifest, 1000)
    service.activate()
    service.input("rate", 1000)
    asyncio.run(clock.advance(31))  # past the first 30 s sleep, after which the rate applies
    return clock, service, extra.get("meters")

nodes = {v: node(v == "on") for v in variants}

async def through_clock(clock):
    start = time.process_time()  # CPU time: other processes on a shared machine disturb it less than wall time
    await clock.advance(batch)
    return (time.process_time() - start) / batch * 1e6

def alone(service):  # the wake-up itself, the clock left out: resume, run to the next sleep, dispatch
    start = time.process_time()
    for _ in range(batch):
        service._cancel_wake()  # the clock's timer for this wake-up: left, the batches through the clock would run twice
        service._on_wake()
    return (time.process_time() - start) / batch * 1e6

out = {v: {"clock": [], "alone": []} for v in variants}
for b in range(batches):
    for v in (variants if b % 2 == 0 else variants[::-1]):
        clock, service, _ = nodes[v]
        out[v]["clock"].append(asyncio.run(through_clock(clock)))
        out[v]["alone"].append(alone(service))
for v, (clock, service, meters) in nodes.items():
    if meters is not None:  # the figures are of metering only if it counted every wake-up
        periods = meters.costs[service.name].kinds["period"].count
        if periods < 2 * batches * batch:
            sys.exit(f"metering recorded {periods} periods, expected at least {2 * batches * batch}")
print(json.dumps(out))
"""


# ---------------------------------------------------------------------- reading the profiler's file


def read_once(path: Path) -> tuple[float, int]:
    reader = ProfileReader(path, ProfileParser())
    start = time.perf_counter()
    reader.update()
    return time.perf_counter() - start, reader.parser.entries


def measure_reading(path: Path, label: str, repeats: int) -> None:
    size = path.stat().st_size
    best, entries = min(read_once(path) for _ in range(repeats))
    tracemalloc.start()
    read_once(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  {label}: {size / 1e6:.1f} MB, {entries:,} entries: {size / best / 1e6:.1f} MB/s, "
          f"{entries / best / 1e6:.2f} M entries/s (best of {repeats}); parser's peak allocation {peak / 1e6:.1f} MB")


def synthetic_profile(path: Path, megabytes: float) -> None:
    """A running node's mix of entries, in virtual-time order, until the file is ``megabytes`` long."""
    rng = random.Random(21)
    head = struct.Struct("<qdB")
    names = [(b"uart0", 0x4000_4000), (b"uart1", 0x4000_5000), (b"nvic", 0xE000_E000)]
    header = struct.pack("<i", 1) + struct.pack("<ii", 0, 3) + b"cpu" + struct.pack("<i", len(names))
    for name, base in names:
        header += struct.pack("<i", len(name)) + name + struct.pack("<QQ", base, base + 0xFFF)
    limit = int(megabytes * 1e6)
    out = bytearray(header)
    executed, ms = 0, 0.0
    while len(out) < limit:  # one quantum of 100 us: its memory accesses, maybe an interrupt or an I/O access, its count
        for _ in range(rng.choice((1, 2, 2, 3))):
            out += head.pack(0, ms, 1) + bytes((rng.choice((2, 2, 2, 3, 3)),))
        if rng.random() < 0.1:
            out += head.pack(0, ms, 3) + struct.pack("<Q", 5)
        if rng.random() < 0.04:
            name, base = rng.choice(names)
            out += head.pack(0, ms, 2) + struct.pack("<BQ", rng.choice((0, 1)), base + 4 * rng.randrange(8))
        executed += rng.randrange(20, 120)
        out += head.pack(0, ms, 0) + struct.pack("<iQ", 0, executed)
        ms += 0.1
    path.write_bytes(out)


async def renode_profile(path: Path, seconds: float) -> float | None:
    """The reference firmware's profile from power-on; the wall time Renode took, or None without Renode."""
    try:
        renode_binary()
    except MissingBinaryError as e:
        print(f"  (no Renode: {e.args[0].split(';')[0]}; the real file is skipped)")
        return None
    firmware = reference_firmware()
    with RenodeProcess(log_dir=path.parent, name="bench-renode") as renode:
        monitor = await RenodeMonitor.connect(renode.host, renode.port, timeout=60, transcript=path.parent / "monitor.log")
        try:
            for command in ('mach create "bench"', f"machine LoadPlatformDescription @{renode_dir() / 'mps2_an385.repl'}",
                            f"sysbus LoadELF @{firmware}", f'machine EnableProfiler "{path}"'):
                await monitor.execute(command, 60)
            start = time.perf_counter()
            await monitor.execute(f'emulation RunFor "{seconds:g}"', 60 + 10 * seconds)
            wall = time.perf_counter() - start
            await monitor.execute('machine EnableProfiler "/dev/null"', 30)
        finally:
            await monitor.quit()
    return wall


# ---------------------------------------------------------------------- the simulator


def wake_us(tree: Path, package: Path, batches: int, batch: int, variants: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per variant, CPU us per wake-up of each batch: through the manual clock ("clock") and by itself ("alone")."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", WAKES, str(package), str(batches), str(batch), ",".join(variants)],
                          env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"the wake-up measurement failed with {tree} on sys.path:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


def overhead(base: list[float], other: list[float]) -> str:
    """The cost of ``other`` over ``base``: the median of the paired batches' ratios, and of the medians."""
    paired = statistics.median(b / a for a, b in zip(base, other))
    medians = statistics.median(other) / statistics.median(base)
    return (f"{100 * (paired - 1):+.1f} % (median of paired ratios; medians {100 * (medians - 1):+.1f} %, "
            f"{statistics.median(other) - statistics.median(base):+.1f} us)")


async def main() -> None:
    repeats = env_ints("BENCH_REPEATS", "3")[0]
    rounds = env_ints("BENCH_ROUNDS", "9")[0]
    batches = env_ints("BENCH_BATCHES", "40")[0]
    batch = env_ints("BENCH_BATCH", "1000")[0]
    baseline = os.environ.get("BENCH_BASELINE")
    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("reading Renode's profiler file:")
        real = work / "renode-profile.bin"
        seconds = env_seconds("BENCH_RENODE_SECONDS", "10")
        wall = await renode_profile(real, seconds)
        if wall is not None:
            size = real.stat().st_size
            print(f"  Renode wrote {size / 1e6:.1f} MB for {seconds:g} s of virtual time (boot included) in {wall:.1f} s"
                  f" of wall time: {size / wall / 1e6:.1f} MB/s")
            measure_reading(real, "that file", repeats)
        synthetic = work / "synthetic-profile.bin"
        synthetic_profile(synthetic, env_seconds("BENCH_PROFILE_MB", "64", unit="megabytes"))
        measure_reading(synthetic, "synthetic file, a running node's mix", repeats)

        package = build_service(SERVICE_DIR, work / "build")
        print(f"simulator, temperature service at 1 s; bare runtime: {batches} batches of {batch} wake-ups per variant,"
              f" alternating in one process:")
        runs = {"": wake_us(REPO, package, batches, batch, ["off", "on"])}
        if baseline:  # that tree has no metering: its runtime against this one's, metering off, processes alternating
            runs[baseline], runs["this tree"] = {"off": {"clock": [], "alone": []}}, {"off": {"clock": [], "alone": []}}
            for r in range(4):
                for label, tree in ((baseline, Path(baseline)), ("this tree", REPO))[:: 1 if r % 2 == 0 else -1]:
                    for kind, values in wake_us(tree, package, max(1, batches // 4), batch, ["off"])["off"].items():
                        runs[label]["off"][kind] += values
        here = runs[""]
        for label in ("off", "on"):
            print(f"  bare runtime, metering {label}: us CPU per wake through the clock {spread(here[label]['clock'])};"
                  f" the wake-up alone {spread(here[label]['alone'])}")
        print(f"  metering on against off, per wake through the clock: {overhead(here['off']['clock'], here['on']['clock'])}")
        print(f"  metering on against off, per wake-up alone: {overhead(here['off']['alone'], here['on']['alone'])}")
        if baseline:  # two processes one after the other: unpaired, medians only
            theirs, ours = runs[baseline]["off"], runs["this tree"]["off"]
            for kind in ("clock", "alone"):
                a, b = statistics.median(theirs[kind]), statistics.median(ours[kind])
                print(f"  metering off against {baseline} ({kind}): medians {a:.1f} -> {b:.1f} us ({100 * (b / a - 1):+.1f} %)")

        reading: dict[bool, list[float]] = {False: [], True: []}
        package_bytes = package.read_bytes()
        print(f"  one node (LwM2M to an in-process gateway), one simulated hour per run, {rounds} runs per variant, alternating:")
        for r in range(rounds):
            for metered in ((False, True) if r % 2 == 0 else (True, False)):
                run = await virtual_run(package_bytes, 1, 1000, HOUR, meter_services=metered)
                if metered and run.metered_periods < run.readings:  # a path around metering would show here
                    raise SystemExit(f"metering on recorded {run.metered_periods} periods for {run.readings} readings")
                if not metered and run.metered_periods:
                    raise SystemExit(f"metering off recorded {run.metered_periods} periods")
                reading[metered].append(run.cpu_s / max(1, run.readings) * 1e6)
        for metered, values in reading.items():
            print(f"  one node, metering {'on' if metered else 'off'}: us CPU per reading {spread(values)}")
        print(f"  metering on against off, per reading of a node: {overhead(reading[False], reading[True])}")
    print(f"load average after: {load_average()}")
