"""Issue 4: time from ``push`` to the first reading on the simulator, by step.

A real docker-registry, the gateway and one simulated node in this process.
Each round pushes the temperature service under a new tag, resolves it for
zephyr/arm/v7 (cold cache), validates it, creates /9/{id}, writes the
package (Block1), installs, activates, and waits for the first reading
notification on /3303/0/5700. The service's own period is not counted: the
first reading comes from the first loop() right after activation.

    python -m benchmarks deploy          # 20 rounds
    BENCH_SECURITY=psk python -m benchmarks deploy   # the node over DTLS-PSK
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from hil.device.node import Node
from hil.faredge import oci
from hil.faredge.deployer import Deployer
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
    with tempfile.TemporaryDirectory() as tmp:
        service_json = build_service(REPO / "services" / "temperature_sensor", Path(tmp) / "build").read_bytes()
        async with Registry(log_dir=tmp) as registry:
            os.environ.setdefault("BENCH_NODES", "2")
            table, mode = security()
            async with Gateway(psk=table) as gw, Node("bench1", psk=table.by_endpoint["bench1"] if table else None) as node:
                await node.connect(gw.coaps_uri if table else gw.uri)
                await gw.wait_for_registration("bench1", timeout=10)
                async with Deployer(gw, cache_dir=Path(tmp) / "cache") as deployer:
                    results = []
                    for i in range(rounds + 1):
                        steps = await one_round(gw, node, deployer, service_json, f"{registry.address}/bench/temperature:{i}")
                        if i:  # the first round warms imports and connections
                            results.append(steps)
    print(f"push -> first reading on the simulator, {rounds} rounds, security {mode} (median / max, ms):")
    for step in STEPS:
        values = [r[step] * 1000 for r in results if step in r]
        if values:
            print(f"  {step:14} {statistics.median(values):7.1f} / {max(values):7.1f}")
