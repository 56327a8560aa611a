"""Issue 12: how soon things work again after a restart of the gateway or of the MQTT broker.

Gateway: 200 simulated nodes (lifetime 300 s) register to a gateway with a
database; it is closed and a new one started on the same port and file. The
figure is the time from the new gateway's start until a read of every node
has succeeded (without the database the nodes are "not registered" until
their next Update, 255 s later).

Broker: an SDF/MQTT bridge publishes readings of one node; mosquitto is
stopped for 2 s and started again on the same port. The figures are the time
from the broker's restart until the bridge is connected again, and until the
first reading queued during the outage arrives at a subscriber.

    python -m benchmarks restarts
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from hil.device.node import Node
from hil.device.sensors import Waveform
from hil.fita.mqtt import MqttClient
from hil.gateway.sdf_mqtt import SdfMqttBridge
from hil.gateway.server import Gateway
from hil.infra.broker import Broker

NODES = int(os.environ.get("BENCH_NODES", "200"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


async def gateway_restart(tmp: Path) -> list[float]:
    database = tmp / "gateway.sqlite"
    times = []
    nodes = [Node(f"r{i:03d}", lifetime=300) for i in range(NODES)]
    for node in nodes:
        await node.start()
    try:
        async with Gateway(database=database, expiry_grace=60) as first:
            port = first.port
            await asyncio.gather(*(node.connect(first.uri) for node in nodes))
            await asyncio.gather(*(first.wait_for_registration(node.endpoint, 30) for node in nodes))
        for _ in range(ROUNDS):
            started = time.perf_counter()
            async with Gateway(port=port, database=database, expiry_grace=60) as again:
                await asyncio.gather(*(again.read(node.endpoint, "/3/0/17") for node in nodes))
                times.append(time.perf_counter() - started)
    finally:
        for node in nodes:
            await node.aclose()
    return times


async def broker_restart(tmp: Path) -> tuple[list[float], list[float]]:
    reconnects, first_readings = [], []
    broker = Broker(log_dir=tmp / "broker0")
    await broker.__aenter__()
    try:
        port = broker.port
        wave = Waveform(base=21.0, amplitude=2.0, period=3.0)
        async with Gateway() as gateway, Node("b", sensors={"temperature": wave}, sample_period=0.1) as node:
            await node.connect(gateway.uri)
            await gateway.wait_for_registration("b")
            async with SdfMqttBridge(gateway, broker.host, port) as bridge:
                for i in range(ROUNDS):
                    await asyncio.to_thread(broker.stop)
                    queued = bridge.stats.queued
                    await asyncio.sleep(2.0)
                    if bridge.stats.queued == queued:
                        raise RuntimeError("no reading was queued during the outage")
                    readings: list[float] = []
                    broker = Broker(log_dir=tmp / f"broker{i + 1}", port=port)
                    await broker.__aenter__()
                    started = time.perf_counter()
                    # a subscriber that connects at once gets what the bridge flushes after reconnecting
                    async with MqttClient(broker.host, port, on_message=lambda m: readings.append(time.perf_counter())) as sub:
                        await sub.subscribe("b/Temperature/#")
                        while bridge.stats.reconnects <= i:
                            await asyncio.sleep(0.005)
                        reconnects.append(time.perf_counter() - started)
                        while not readings:
                            await asyncio.sleep(0.005)
                        first_readings.append(readings[0] - started)
    finally:
        await broker.__aexit__(None, None, None)
    return reconnects, first_readings


def _figures(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        times = await gateway_restart(Path(tmp))
        print(f"gateway restart with its database, {NODES} nodes, {ROUNDS} restarts:")
        print(f"  start -> every node read: {_figures(times)}")
        reconnects, first = await broker_restart(Path(tmp))
        print(f"broker restart under the SDF/MQTT bridge (2 s outage), {ROUNDS} restarts:")
        print(f"  broker up -> bridge connected again: {_figures(reconnects)}")
        print(f"  broker up -> first reading from the outage delivered: {_figures(first)}")
