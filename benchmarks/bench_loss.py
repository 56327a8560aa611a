"""Issue 12: deploy and remove through a lossy link, at 0, 10 and 30 % datagram loss each way.

The gateway and one simulated node in this process, the project's
:class:`hil.net.LossyLink` between them (seeded), CoAP timers short enough for
loopback (ACK_TIMEOUT 0.05 s, the RFC's other parameters). Each round
deploys the temperature service (create, Block1 write, install, activate)
and removes it; a round counts as complete when both succeed within 60 s.
After the rounds the link is made lossless and the node's /9 and /3303 are
read: anything left over is an orphan.

    python -m benchmarks loss              # 20 rounds per loss rate
    BENCH_ROUNDS=5 python -m benchmarks loss
    BENCH_TARGET=qemu python -m benchmarks loss   # the reference firmware on QEMU instead
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from hil.faredge.deployer import DeployError, Deployer
from hil.gateway.server import Gateway
from hil.lwm2m.model import Path as LwPath
from hil.lwm2m.transmission import TransmissionParameters
from hil.net.lossy import LinkStats, LossyLink
from hil.sdk import build_service

REPO = Path(__file__).resolve().parents[1]
FAST = TransmissionParameters(ack_timeout=0.05)  # loopback: a round trip takes about a millisecond
ROUND_LIMIT = 60.0


@dataclass
class LossRun:
    loss: float
    rounds: int
    times: list[float] = field(default_factory=list)  # seconds, completed rounds
    failures: list[str] = field(default_factory=list)  # each failure's message
    orphans: dict[str, list[int]] = field(default_factory=dict)  # "/9", "/3303" -> instances left over
    link: str = ""

    @property
    def completed(self) -> int:
        return len(self.times)

    def summary(self) -> str:
        if not self.times:
            timing = "no round completed"
        else:
            timing = f"median {statistics.median(self.times):.2f} s, max {max(self.times):.2f} s"
        left = ", ".join(f"{k} {v}" for k, v in self.orphans.items() if v) or "none"
        return f"{100 * self.loss:3.0f} % loss: {self.completed}/{self.rounds} complete, {timing}; orphans: {left}"


async def deploy_rounds(
    gateway: Gateway,
    link: LossyLink,
    endpoint: str,
    service_json: bytes,
    *,
    loss: float,
    rounds: int,
    baseline: dict[str, list[int]],
) -> LossRun:
    """``rounds`` deploy+remove rounds with ``loss`` on ``link``; then the orphans, read over a lossless link."""
    run = LossRun(loss, rounds)
    async with Deployer(gateway) as deployer:
        link.set_loss(loss)
        link.stats = LinkStats()
        for _ in range(rounds):
            started = time.monotonic()
            try:
                async with asyncio.timeout(ROUND_LIMIT):
                    deployment = await deployer.deploy(service_json, endpoint)
                    await deployer.remove(endpoint, deployment)
                run.times.append(time.monotonic() - started)
            except DeployError as e:
                run.failures.append(str(e))
            except TimeoutError:
                run.failures.append(f"round did not finish within {ROUND_LIMIT:g} s")
        link.set_loss(0.0)
        run.link = link.stats.summary()
        run.orphans = {name: sorted(set(ids) - set(baseline.get(name, []))) for name, ids in (await instances(gateway, endpoint)).items()}
    return run


async def instances(gateway: Gateway, endpoint: str) -> dict[str, list[int]]:
    """The node's /9 and /3303 instances, read from the node itself."""
    found: dict[str, list[int]] = {}
    for obj in (9, 3303):
        content = await gateway.read(endpoint, f"/{obj}")
        found[f"/{obj}"] = sorted({p.inst for p in content if isinstance(p, LwPath) and p.inst is not None})
    return found


async def sim_stack(
    stack: AsyncExitStack, loss_seed: int, endpoint: str = "lossy", params: TransmissionParameters = FAST
) -> tuple[Gateway, LossyLink]:
    """Gateway, link and a simulated node behind it, registered; entered into ``stack``."""
    from hil.device.node import Node

    gateway = await stack.enter_async_context(Gateway(transmission=params, expiry_grace=60.0))
    link = await stack.enter_async_context(LossyLink(("127.0.0.1", gateway.port), seed=loss_seed))
    node = await stack.enter_async_context(Node(endpoint, transmission=params, lifetime=600))
    await node.connect(link.uri)
    await gateway.wait_for_registration(endpoint, timeout=30)
    return gateway, link


async def qemu_stack(stack: AsyncExitStack, loss_seed: int, tmp: Path, endpoint: str = "lossy") -> tuple[Gateway, LossyLink]:
    from hil.boards import get_board
    from hil.reference_firmware import reference_firmware
    from hil.targets.base import TargetConfig
    from hil.targets.qemu import QemuTarget

    gateway = await stack.enter_async_context(Gateway(transmission=FAST, expiry_grace=60.0))
    link = await stack.enter_async_context(LossyLink(("127.0.0.1", gateway.port), seed=loss_seed))
    target = await stack.enter_async_context(QemuTarget(TargetConfig(
        endpoint=endpoint, log_dir=tmp, board=get_board("mps2_an385"), firmware=reference_firmware())))
    await target.bootstrap(target.device_server_uri(link.host, link.port))
    await gateway.wait_for_registration(endpoint, timeout=30)
    return gateway, link


async def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "20"))
    where = os.environ.get("BENCH_TARGET", "sim")
    with tempfile.TemporaryDirectory() as tmp:
        service_json = build_service(REPO / "services" / "temperature_sensor", Path(tmp) / "build").read_bytes()
        async with AsyncExitStack() as stack:
            if where == "qemu":
                gateway, link = await qemu_stack(stack, 12, Path(tmp))
            else:
                gateway, link = await sim_stack(stack, 12)
            baseline = await instances(gateway, "lossy")
            print(f"deploy + remove on {where} through a lossy link ({FAST.describe()}), {rounds} rounds per rate:")
            for loss in (0.0, 0.1, 0.3):
                run = await deploy_rounds(gateway, link, "lossy", service_json, loss=loss, rounds=rounds, baseline=baseline)
                print(f"  {run.summary()}")
                print(f"      link: {run.link}")
                for failure in run.failures[:3]:
                    print(f"      failure: {failure}")

