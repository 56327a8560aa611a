"""Service outputs as the server sees them: mandatory resources from creation, notifications and Send.

The service is the project's own ``level_sensor`` (tests/data/services): its
output ``value`` maps to ``lwm2m:3300/x/5700`` and appears only after its
input ``level`` is given, like a generic sensor that reports on demand.
Everything runs on real UDP/MQTT/HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
import pytest
from conftest import REPO, WAIT, wait_until
from northbound_helpers import MqttProbe

from hil.device.node import Node
from hil.gateway import Gateway
from hil.gateway.rest import RestApi
from hil.gateway.sdf_mqtt import SdfMqttBridge
from hil.gateway.strict import StrictRegistration
from hil.lwm2m.model import Path
from hil.readings import ReadingCollector
from hil.sdk import build_service

TEST_SERVICES = REPO / "tests" / "data" / "services"
VALUE = Path(3300, 0, 5700)


@pytest.fixture(scope="module")
def level_sensor(tmp_path_factory) -> bytes:
    return build_service(TEST_SERVICES / "level_sensor", tmp_path_factory.mktemp("level")).read_bytes()


@pytest.fixture(scope="module")
def counter(tmp_path_factory) -> bytes:
    return build_service(TEST_SERVICES / "counter", tmp_path_factory.mktemp("counter")).read_bytes()


async def deploy(gw: Gateway, endpoint: str, package: bytes, inst: int = 1000) -> None:
    await gw.create(endpoint, "/9", instance_id=inst)
    await gw.write(endpoint, f"/9/{inst}/2", package)
    await gw.execute(endpoint, f"/9/{inst}/4")
    await gw.execute(endpoint, f"/9/{inst}/10")


async def give_level(node: Node, level: float) -> None:
    out = await node.shell.run_line(f"embserve service input 1000 level {level}")
    assert node.shell.last_status == 0, out


async def test_output_instance_has_its_mandatory_value_before_the_first_output(level_sensor):
    async with Gateway() as gw, Node("lvl1") as node:
        await node.connect(gw.uri)
        await gw.wait_for_registration("lvl1", WAIT)
        await deploy(gw, "lvl1", level_sensor)
        await wait_until(lambda: 3300 in gw.registration("lvl1").available_instances, "the 3300 instance in the registration")
        # the natural order: observe first, then give the service its input
        async with ReadingCollector(gw, "lvl1", VALUE) as readings:
            assert readings.initial is not None and readings.initial.value == 0.0  # Sensor Value exists, neutral
            await give_level(node, 3.5)
            first = await readings.wait(1, WAIT)
            assert first[0].value == 3.5  # the first output notifies
        instance = await gw.read("lvl1", "/3300/0")
        assert instance[VALUE] == 3.5


async def test_send_reaches_readings_mqtt_and_the_rest_event_stream(level_sensor, broker):
    async with Gateway(registration_policy=StrictRegistration()) as gw, SdfMqttBridge(gw, broker.host, broker.port), \
            RestApi(gw) as api, MqttProbe(broker.host, broker.port) as probe, aiohttp.ClientSession() as http, \
            Node("snd1", report="send") as node:
        await probe.watch("snd1/Generic_Sensor/+/Property/#")
        await node.connect(gw.uri)
        await gw.wait_for_registration("snd1", WAIT)
        events = await http.get(f"{api.url}/api/event", timeout=aiohttp.ClientTimeout(total=None, sock_read=WAIT))
        try:
            assert (await events.content.readline()).startswith(b":")  # the stream is live
            await deploy(gw, "snd1", level_sensor)
            await wait_until(lambda: 3300 in gw.registration("snd1").available_instances, "the 3300 instance")
            async with ReadingCollector(gw, "snd1", VALUE) as readings:
                await give_level(node, 4.25)
                reading = await readings.wait_for_value(4.25, WAIT)
                assert reading.path == VALUE
                # it came by Send: the observation itself stayed quiet
                assert readings._observation.received == 1 and gw.sends.received >= 1
            published = await probe.expect("the reading on MQTT", lambda r: r.topic == "snd1/Generic_Sensor/0/Property/Sensor_Value")
            assert published.json()["value"] == 4.25 and published.json()["Generic_Sensor"] == 4.25
            send_event = None
            async with asyncio.timeout(WAIT):
                while send_event is None:
                    line = await events.content.readline()
                    if line == b"event: SEND\n":
                        send_event = json.loads((await events.content.readline()).removeprefix(b"data: "))
            assert send_event["ep"] == "snd1"
            assert send_event["val"]["/3300/0/5700"] == {"kind": "singleResource", "id": 5700, "type": "FLOAT", "value": 4.25}
        finally:
            events.close()


async def test_sim_reports_by_send_end_to_end(counter):
    """``embserve-hil sim --report send`` in its own process; the counter service's outputs arrive as Sends."""
    async with Gateway() as gw:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hil.cli", "sim", "--server", gw.uri, "--prefix", "simsend", "--report", "send",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await gw.wait_for_registration("simsend1", WAIT)
            await deploy(gw, "simsend1", counter)
            await wait_until(lambda: 3300 in gw.registration("simsend1").available_instances, "the 3300 instance")
            async with ReadingCollector(gw, "simsend1", VALUE) as readings:
                got = await readings.wait(2, WAIT)
                assert got[1].value > got[0].value  # the count goes up, one Send a second
                assert readings._observation.received == 1  # nothing came as a notification
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                try:
                    async with asyncio.timeout(WAIT):
                        await proc.communicate()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        assert proc.returncode == 0


async def test_sim_prints_every_refusal_and_exits_non_zero_when_nodes_do_not_register():
    # a 1.0-only strict server, nodes without TLV: 1.1 is refused (4.12), and 1.0 is no option for them
    async with Gateway(registration_policy=StrictRegistration(versions=("1.0",))) as gw:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hil.cli", "sim", "--server", gw.uri, "--prefix", "refused", "--nodes", "2",
            "--formats", "senml_json", "--register-timeout", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(WAIT):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = err.decode()
        assert proc.returncode == 1, text
        assert "refused1: Registration failed: server answered 4.12 Precondition Failed (lwm2m=1.1: this server supports LwM2M 1.0)" in text
        assert "refused2: Registration failed" in text
        assert "2 of 2 node(s) did not register within 2 s" in text
        assert "stopped: 0 of 2 node(s)" in out.decode()
