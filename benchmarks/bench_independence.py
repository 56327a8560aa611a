"""Issue 12: a live node's reads while other devices are dead, silent or flooding the gateway.

One gateway and three simulated nodes in this process: ``live`` answers,
``dead`` has closed its port (ICMP port unreachable), ``silent`` sits behind
a cut :class:`hil.net.LossyLink` (nothing arrives, nothing comes back), and
a socket floods the gateway with random datagrams. Each round starts a read
of the dead and the silent node, sends 20 garbage datagrams, then reads the
live node; the live read's wall time is the figure (the first rounds, which
pay for first uses, are left out).

    python -m benchmarks independence
    BENCH_ROUNDS=500 python -m benchmarks independence
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from hil.device.node import Node
from hil.gateway.server import Gateway
from hil.lwm2m.transmission import TransmissionParameters
from hil.net.lossy import LossyLink

FAST = TransmissionParameters(ack_timeout=0.02)  # loopback: a round trip takes about a millisecond
WARM_UP = 3


@dataclass
class IndependenceRun:
    latencies: list[float] = field(default_factory=list)  # s, wall time of each live read after warm-up
    overtook: int = 0  # live reads that finished while the silent read of their round was still waiting
    dead: list[object] = field(default_factory=list)  # outcome of each read of the dead node
    silent: list[object] = field(default_factory=list)  # outcome of each read of the silent node
    events: set[tuple[str, str]] = field(default_factory=set)  # (kind, endpoint) of registration events

    def summary(self) -> str:
        lat = sorted(self.latencies)
        return (f"live reads: median {statistics.median(lat) * 1000:.2f} ms, p95 {lat[int(0.95 * len(lat))] * 1000:.2f} ms, "
                f"max {lat[-1] * 1000:.2f} ms over {len(lat)}; {self.overtook}/{len(self.dead)} finished before "
                f"the silent node's read of their round")


async def independence_run(rounds: int = 100) -> IndependenceRun:
    run = IndependenceRun()
    async with AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(Gateway(transmission=FAST))
        events = await stack.enter_async_context(gateway.subscribe())
        nodes = {name: await stack.enter_async_context(Node(name, transmission=FAST)) for name in ("live", "dead", "silent")}
        link = await stack.enter_async_context(LossyLink(("127.0.0.1", gateway.port)))
        await nodes["live"].connect(gateway.uri)
        await nodes["dead"].connect(gateway.uri)
        await nodes["silent"].connect(link.uri)
        for name in nodes:
            await gateway.wait_for_registration(name)
        # its port closes: ICMP port unreachable from now on (the node never sends again)
        context, nodes["dead"].client.context = nodes["dead"].client.context, None
        await context.shutdown()
        link.cut()
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.setblocking(False)
        rng = random.Random(3)
        dead: list[asyncio.Future] = []
        silent: list[asyncio.Future] = []
        try:
            for i in range(rounds):
                dead.append(asyncio.ensure_future(gateway.read("dead", "/3/0/0")))
                silent.append(asyncio.ensure_future(gateway.read("silent", "/3/0/0", timeout=1.0)))
                for _ in range(20):
                    flood.sendto(bytes(rng.getrandbits(8) for _ in range(rng.randint(4, 40))), ("127.0.0.1", gateway.port))
                started = time.perf_counter()
                await gateway.read("live", "/3/0/0")
                if i >= WARM_UP:
                    run.latencies.append(time.perf_counter() - started)
                run.overtook += not silent[-1].done()
        finally:
            flood.close()
        run.dead = await asyncio.gather(*dead, return_exceptions=True)
        run.silent = await asyncio.gather(*silent, return_exceptions=True)
        run.events = {(e.kind, e.endpoint) for e in events.seen}
        while True:
            try:
                e = await events.get(timeout=0.05)
            except Exception:
                break
            run.events.add((e.kind, e.endpoint))
    return run


async def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "200"))
    run = await independence_run(rounds)
    print(run.summary())
