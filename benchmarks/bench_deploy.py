"""Issue 4: time from ``push`` to the first reading on the simulator, by step.

A real docker-registry, the gateway and one simulated node in this process.
Each round pushes the temperature service under a new tag, resolves it for
zephyr/arm/v7 (cold cache), validates it, creates /9/{id}, writes the
package (Block1), installs, activates, and waits for the first reading
notification on /3303/0/5700. The service's own period is not counted: the
first reading comes from the first loop() right after activation.

    python -m benchmarks deploy          # 20 rounds with recording, 20 without, interleaved
    BENCH_SECURITY=psk python -m benchmarks deploy   # the node over DTLS-PSK

Recording is what every HIL test does for its bundle (issue 14): the
gateway's datagrams go into a capture, the deployer's steps into a timeline.
Rounds alternate with and without it, so both see the same machine load; the
bundle of the recorded rounds is written once at the end, as after a test,
and that write is timed on its own.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from hil.bundle import Recorder
from hil.device.node import Node
from hil.faredge import oci
from hil.faredge.deployer import Deployer
from hil.gateway.capture import tap
from hil.gateway.server import Gateway
from hil.infra.registry import Registry
from hil.sdk import build_service

from .bench_registration import security

REPO = Path(__file__).resolve().parents[1]
STEPS = ["push", "fetch", "validate", "create", "write", "install", "activate", "other", "first reading", "total"]


async def one_round(gw, node, deployer, service_json: bytes, ref: str) -> dict[str, float]:
    t0 = time.perf_counter()
    await oci.push_artifact(service_json, ref)
    pushed = time.perf_counter()
    # Observe before deploying: the first notification after that comes from the
    # service's first output (outputs notify even when the value is unchanged).
    observation = await gw.observe(node.endpoint, "/3303/0/5700")
    arrivals: list[float] = []
    observation.add_listener(lambda n: arrivals.append(time.perf_counter()))
    deployment = await deployer.deploy(ref, node.endpoint)
    active = time.perf_counter()
    deadline = active + 5
    while not arrivals and time.perf_counter() < deadline:
        await asyncio.sleep(0.0005)
    if not arrivals:
        raise RuntimeError("no reading within 5 s of activation")
    first_at = max(arrivals[0], active)
    observation.cancel()
    steps = {"push": pushed - t0, **deployment.steps}
    steps["other"] = (active - pushed) - sum(deployment.steps.values())  # instance lookup, state polls
    steps["first reading"] = first_at - active
    steps["total"] = first_at - t0
    await deployer.remove(node.endpoint, deployment)
    return steps


async def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "20"))
    recorder = Recorder(nodeid="benchmarks/bench_deploy", target="sim")
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        service_json = build_service(REPO / "services" / "temperature_sensor", Path(tmp) / "build").read_bytes()
        async with Registry(log_dir=tmp) as registry:
            os.environ.setdefault("BENCH_NODES", "2")
            table, mode = security()
            async with Gateway(psk=table) as gw, Node("bench1", psk=table.by_endpoint["bench1"] if table else None) as node:
                await node.connect(gw.coaps_uri if table else gw.uri)
                await gw.wait_for_registration("bench1", timeout=10)
                sink = recorder.gateway_sink(gw.host, gw.port)
                async with Deployer(gw, cache_dir=Path(tmp) / "cache") as deployer:
                    for i in range(2 * rounds + 2):
                        recording = bool(i % 2)
                        untap = tap(gw, sink) if recording else None
                        deployer.timeline = recorder.timeline if recording else None
                        try:
                            steps = await one_round(gw, node, deployer, service_json,
                                                    f"{registry.address}/bench/temperature:{i}")
                        finally:
                            if untap is not None:
                                untap()
                        if i >= 2:  # the first round of each kind warms imports and connections
                            results[recording].append(steps)
            t = time.perf_counter()
            recorder.write(Path(tmp) / "bundle", outcome="passed")
            write_ms = (time.perf_counter() - t) * 1000
    print(f"push -> first reading on the simulator, {rounds} rounds each, security {mode} (median / max, ms):")
    print(f"  {'':14} {'recording':>17}   {'not recording':>17}")
    for step in STEPS:
        cells = []
        for recording in (True, False):
            values = [r[step] * 1000 for r in results[recording] if step in r]
            cells.append(f"{statistics.median(values):7.1f} / {max(values):7.1f}" if values else " " * 17)
        print(f"  {step:14} {cells[0]}   {cells[1]}")
    on = statistics.median(r["total"] for r in results[True])
    off = statistics.median(r["total"] for r in results[False])
    per_round = len(recorder.capture.datagrams) / (rounds + 1)
    sink = Recorder(nodeid="x", target="sim").gateway_sink("127.0.0.1", 5683)
    payload = bytes(64)
    t = time.perf_counter()
    for _ in range(100_000):
        sink(("127.0.0.1", 40000), ("127.0.0.1", 5683), payload)
    each_us = (time.perf_counter() - t) * 10
    print(f"recording one datagram costs {each_us:.2f} us; a round has {per_round:.0f}: {per_round * each_us:.0f} us"
          f" of its {off * 1000:.1f} ms ({100 * per_round * each_us / 1000 / (off * 1000):.2f} %)")
    print(f"recording costs {100 * (on - off) / off:+.1f} % on the median total ({on * 1000:.1f} vs {off * 1000:.1f} ms);"
          f" {len(recorder.capture.datagrams)} datagrams and {len(recorder.timeline.steps)} steps recorded,"
          f" bundle written in {write_ms:.1f} ms once at the end")
