"""Issue 5: the gateway's northbound APIs under load.

Real mosquitto, the gateway with its SDF/MQTT bridge and REST API, and
simulated nodes, all but mosquitto in this process (so on 2 cores the nodes,
the gateway and the kubelet-side client share one event loop).

* Deploy latency: the kubelet's four steps (create, write package, install,
  activate) through :class:`MqttChannel` (NextGenGW mode) and
  :class:`RestChannel` (leshan mode), for 1 node and for 100 nodes deployed at
  once; per-node latency median / p99 and the wall time of the whole batch.
  The service is the project's temperature service built from C.
* Register-and-announce: 1,000 nodes told to register at once; time until a
  watcher subscribed to ``announce`` has seen all 1,000.

    python -m benchmarks northbound
    BENCH_ANNOUNCE_NODES=500 BENCH_DEPLOY_NODES=50 python -m benchmarks northbound
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from hil.device.node import Node
from hil.faredge.channel_mqtt import MqttChannel
from hil.faredge.channel_rest import RestChannel
from hil.faredge.channels import DeployChannel
from hil.fita.mqtt import MqttClient
from hil.gateway.rest import RestApi
from hil.gateway.sdf_mqtt import SdfMqttBridge
from hil.gateway.server import Gateway
from hil.infra.broker import Broker
from hil.sdk import build_service

REPO = Path(__file__).resolve().parents[1]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def start_nodes(gw: Gateway, names: list[str]) -> list[Node]:
    nodes = [Node(name) for name in names]
    await asyncio.gather(*(n.start() for n in nodes))
    for n in nodes:
        await n.connect(gw.uri)
    await asyncio.gather(*(gw.wait_for_registration(name, 60) for name in names))
    return nodes


async def deploy(channel: DeployChannel, endpoint: str, instance: int, service_json: bytes) -> float:
    t0 = time.perf_counter()
    await channel.create(endpoint, instance)
    await channel.write_package(endpoint, instance, service_json)
    await channel.install(endpoint, instance)
    await channel.activate(endpoint, instance)
    return time.perf_counter() - t0


async def deploy_batch(channel: DeployChannel, endpoints: list[str], instance: int, service_json: bytes) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    latencies = await asyncio.gather(*(deploy(channel, ep, instance, service_json) for ep in endpoints))
    wall = time.perf_counter() - t0
    await asyncio.gather(*(channel.delete(ep, instance) for ep in endpoints))
    return list(latencies), wall


async def bench_deploys(broker: Broker, service_json: bytes, count: int) -> None:
    async with Gateway() as gw, SdfMqttBridge(gw, broker.host, broker.port) as bridge, RestApi(gw) as rest:
        bridge.readings_enabled = False  # the deploy path alone
        names = [f"deploy{i}" for i in range(count)]
        nodes = await start_nodes(gw, names)
        try:
            async with MqttChannel(broker.host, broker.port) as mqtt, RestChannel(rest.url) as http:
                for label, channel, instance in (("MQTT", mqtt, 0), ("REST", http, 1000)):
                    await deploy_batch(channel, names[:1], instance, service_json)  # warm-up
                    singles = [(await deploy_batch(channel, names[:1], instance, service_json))[0][0] for _ in range(10)]
                    batch, wall = await deploy_batch(channel, names, instance, service_json)
                    print(f"  {label}: 1 node     median {statistics.median(singles) * 1000:7.1f} ms, p99 {p99(singles) * 1000:7.1f} ms (10 rounds)")
                    print(f"  {label}: {count} at once median {statistics.median(batch) * 1000:7.1f} ms, p99 {p99(batch) * 1000:7.1f} ms, "
                          f"all done in {wall:.2f} s")
        finally:
            await asyncio.gather(*(n.aclose() for n in nodes))


async def bench_announce(broker: Broker, count: int) -> None:
    seen: set[str] = set()
    done = asyncio.Event()

    def on_message(message) -> None:
        seen.update(json.loads(message.payload))
        if len(seen) >= count:
            done.set()

    async with MqttClient(broker.host, broker.port, on_message=on_message) as watcher:
        await watcher.subscribe("announce", qos=1)
        async with Gateway() as gw, SdfMqttBridge(gw, broker.host, broker.port, readings=False):
            names = [f"fleet{i}" for i in range(count)]
            nodes = [Node(name) for name in names]
            await asyncio.gather(*(n.start() for n in nodes))
            try:
                t0 = time.perf_counter()
                for n in nodes:
                    await n.connect(gw.uri)
                await asyncio.gather(*(gw.wait_for_registration(name, 120) for name in names))
                registered = time.perf_counter() - t0
                await asyncio.wait_for(done.wait(), 120)
                announced = time.perf_counter() - t0
            finally:
                await asyncio.gather(*(n.aclose() for n in nodes))
    print(f"  {count} nodes: all registered after {registered:.2f} s, all announced after {announced:.2f} s "
          f"({count / announced:.0f} nodes/s)")


async def main() -> None:
    deploy_nodes = int(os.environ.get("BENCH_DEPLOY_NODES", "100"))
    announce_nodes = int(os.environ.get("BENCH_ANNOUNCE_NODES", "1000"))
    with tempfile.TemporaryDirectory() as tmp:
        service_json = build_service(REPO / "services" / "temperature_sensor", Path(tmp) / "build").read_bytes()
        async with Broker(log_dir=tmp) as broker:
            print(f"deploy latency (create, write {len(service_json)} B, install, activate), per node:")
            await bench_deploys(broker, service_json, deploy_nodes)
            print("register and announce:")
            await bench_announce(broker, announce_nodes)


if __name__ == "__main__":
    asyncio.run(main())
