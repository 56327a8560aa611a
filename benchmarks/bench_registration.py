"""Issue 2: registration of many simulated nodes in one process to one gateway.

Measures wall time until every node is registered (as seen by the gateway),
peak RSS of the process, the read round trip (``/3/0/17``, in the format the
gateway chooses) median and p99 over the registered fleet, and the read
round trip per content format, of one resource and of the Device instance.

    python -m benchmarks registration            # 1,000 nodes
    BENCH_NODES=200 python -m benchmarks registration
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time

from hil.device.clock import VirtualClock
from hil.device.node import Node
from hil.gateway.server import Gateway


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    count = int(os.environ.get("BENCH_NODES", "1000"))
    reads = int(os.environ.get("BENCH_READS", "1000"))
    rss_before = rss_mb()
    clock = VirtualClock()  # one clock for the fleet, as the simulator uses it
    async with Gateway(expiry_grace=30.0) as gw:
        nodes = [Node(f"bench{i}", clock=clock) for i in range(count)]
        t_boot = time.perf_counter()
        await asyncio.gather(*(n.start() for n in nodes))
        boot_s = time.perf_counter() - t_boot

        all_in = asyncio.Event()
        remove = gw.add_listener(lambda e: len(gw.registrations) >= count and all_in.set())
        t0 = time.perf_counter()
        await asyncio.gather(*(n.connect(gw.uri) for n in nodes))
        await asyncio.wait_for(all_in.wait(), 120)
        register_s = time.perf_counter() - t0
        remove()

        rtts = []
        for i in range(reads):
            ep = nodes[i % count].endpoint
            t = time.perf_counter()
            await gw.read(ep, "/3/0/17")
            rtts.append(time.perf_counter() - t)
        rtts.sort()
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        peak = rss_mb()

        print(f"nodes: {count}")
        print(f"boot (objects, sockets): {boot_s:.2f} s")
        print(f"register all (connect -> gateway sees {count}): {register_s:.2f} s")
        print(f"peak RSS: {peak:.0f} MB (before nodes: {rss_before:.0f} MB; {(peak - rss_before) * 1024 / count:.0f} kB per node)")
        print(f"read /3/0/17 round trip over {reads} reads: median {statistics.median(rtts) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
        await per_format(gw, [n.endpoint for n in nodes], max(100, reads // 4))
        t = time.perf_counter()
        await asyncio.gather(*(n.aclose() for n in nodes))
        print(f"de-register and close all: {time.perf_counter() - t:.2f} s")


FORMATS = (("text", "/3/0/17"), ("tlv", "/3/0/17"), ("senml", "/3/0/17"), ("senml_cbor", "/3/0/17"),
           ("tlv", "/3/0"), ("senml", "/3/0"), ("senml_cbor", "/3/0"), (None, "/3/0"))


async def per_format(gw: Gateway, endpoints: list[str], reads: int) -> None:
    """Read round trip per content format (None: the gateway's own choice) over ``reads`` reads each."""
    for fmt, path in FORMATS:
        rtts = []
        for i in range(reads):
            t = time.perf_counter()
            await gw.read(endpoints[i % len(endpoints)], path, fmt)
            rtts.append(time.perf_counter() - t)
        rtts.sort()
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        name = fmt or "chosen (SenML CBOR, announced)"
        print(f"read {path} as {name} over {reads} reads: median {statistics.median(rtts) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
