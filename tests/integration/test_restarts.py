"""Restarts of the parts around the devices: the gateway, the MQTT broker under the SDF bridge, the registry.

Each restart is real: the same port, the same files, a new process or object.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from conftest import wait_until

from hil.device.node import Node
from hil.device.sensors import Waveform
from hil.faredge.deployer import Deployer
from hil.faredge import oci
from hil.fita.mqtt import MqttClient
from hil.gateway.sdf_mqtt import SdfMqttBridge
from hil.gateway.server import Gateway
from hil.infra.broker import Broker
from hil.infra.registry import Registry
from hil.lwm2m.model import Path as LwPath

pytestmark = [pytest.mark.sim]


async def test_a_restarted_gateway_reaches_its_nodes_at_once(tmp_path: Path, temperature_service_json: Path) -> None:
    database = tmp_path / "gateway.sqlite"
    async with Node("kept", lifetime=300) as kept, Node("again", lifetime=300) as again:
        async with Gateway(database=database) as first:
            port = first.port
            await kept.connect(first.uri)
            await again.connect(first.uri)
            before = await first.wait_for_registration("kept")
            await first.wait_for_registration("again")
            async with Deployer(first) as deployer:
                await deployer.deploy(temperature_service_json.read_bytes(), "kept")
        # the gateway is down; a node registered before will only Update in 255 s
        started = time.monotonic()
        async with Gateway(port=port, database=database) as second:
            value = await second.read("kept", "/3/0/17")  # no registration needed first
            reached = time.monotonic() - started
            assert value[LwPath(3, 0, 17)] == "embServe Node"
            assert reached < 1.0, f"{reached:.2f} s"
            restored = second.registration("kept")
            assert restored.registration_id == before.registration_id and restored.address == before.address
            assert [(d.endpoint, d.instance, d.name, d.stage) for d in second.deployments] == [
                ("kept", 1000, "temperature_sensor", "active")]
            # the node's Update to its old registration is accepted: no new Register
            updates = kept.client.updates
            kept.client.trigger_update()
            await wait_until(lambda: kept.client.updates > updates, "the node's Update to be answered")
            assert kept.client.registrations == 1
            # a node that registers anew meanwhile replaces what was restored
            restored_again = second.registration("again").registration_id
            await again.reboot()
            await again.wait_registered(10)
            fresh = await second.wait_for_registration("again")
            assert fresh.registration_id != restored_again
            assert list(second.registrations).count("again") == 1
            assert await second.read("again", "/3/0/17")


async def test_broker_restart_under_the_bridge_loses_nothing(tmp_path: Path) -> None:
    async with Broker(log_dir=tmp_path / "b1") as broker:
        port = broker.port
        varying = Waveform(base=21.0, amplitude=2.0, period=3.0)  # a reading every sample
        async with Gateway() as gateway, Node("steady", sensors={"temperature": varying}, sample_period=0.1) as node:
            await node.connect(gateway.uri)
            await gateway.wait_for_registration("steady")
            bridge = SdfMqttBridge(gateway, broker.host, port, reconnect_initial=0.05, reconnect_cap=0.5)
            async with bridge:
                await wait_until(lambda: bridge.stats.readings > 0 and not bridge._outbox, "a first reading")
                await asyncio.to_thread(broker.stop)
                await wait_until(lambda: not bridge.mqtt.connected, "the bridge to notice the broker is gone")
                published = bridge.stats.readings
                async with Node("newcomer") as newcomer:  # registers while the broker is away
                    await newcomer.connect(gateway.uri)
                    await gateway.wait_for_registration("newcomer")
                    await wait_until(lambda: bridge.stats.readings >= published + 3, "readings while the broker is away")
                    seen: list[tuple[str, bytes]] = []
                    async with Broker(log_dir=tmp_path / "b2", port=port):
                        async with MqttClient(broker.host, port, on_message=lambda m: seen.append((m.topic, bytes(m.payload)))) as watcher:
                            await watcher.subscribe("#")
                            back = time.monotonic()
                            await wait_until(lambda: bridge.stats.reconnects == 1, "the bridge to reconnect", timeout=10)
                            recovery = time.monotonic() - back
                            await wait_until(lambda: any(t == "announce" and b"newcomer" in p for t, p in seen),
                                             "the newcomer's announce")
                            # readings queued while away arrive, and requests are served again
                            await wait_until(lambda: sum(t.startswith("steady/Temperature") for t, _ in seen) >= 3,
                                             "queued readings")
                            answer = await _sdf_get(watcher, seen, "steady/Device/0/Property/Model_Number")
                            assert answer["response_code"] == 69, answer
            assert bridge.stats.lost == 0 and bridge.stats.queued >= 3, bridge.stats
            assert recovery < 2.0, f"recovery took {recovery:.2f} s"


async def _sdf_get(client: MqttClient, seen: list[tuple[str, bytes]], topic: str) -> dict:
    from hil.fita.mqtt import publish_properties

    response_topic = "answers/restart-test"
    await client.subscribe(response_topic)
    client.publish(topic, json.dumps({"operation": "GET"}), qos=1, properties=publish_properties(response_topic=response_topic))
    await wait_until(lambda: any(t == response_topic for t, _ in seen), f"an answer to GET {topic}")
    return json.loads(next(p for t, p in seen if t == response_topic))


async def test_deploys_from_a_restarted_registry(tmp_path: Path, temperature_service_json: Path) -> None:
    storage = tmp_path / "registry-storage"
    async with Registry(log_dir=tmp_path / "r1", storage_dir=storage) as registry:
        port = registry.port
        ref = f"{registry.address}/embserve/temperature_sensor:1"
        await oci.push_artifact(temperature_service_json, ref)
    async with Registry(log_dir=tmp_path / "r2", storage_dir=storage, port=port), Gateway() as gateway, Node("n") as node:
        await node.connect(gateway.uri)
        await gateway.wait_for_registration("n")
        async with Deployer(gateway, cache_dir=tmp_path / "cache") as deployer:
            deployment = await deployer.deploy(ref, "n")
            assert deployment.digest and deployment.name == "temperature_sensor"
