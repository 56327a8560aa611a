"""Conformance of the gateway's SDF/MQTT bridge to NextGenGW as FITA's kubelet and node watcher use it.

Real mosquitto, real gateway, real simulated nodes; the probe is a plain MQTT
v5 client sending what the kubelet sends (protocol doc, section 4).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets

import pytest
from conftest import FITA_SERVICE, wait_until
from northbound_helpers import MqttProbe, has_runtime, many_nodes, running_node

from hil.faredge.channel_mqtt import MqttChannel
from hil.faredge.channels import DeployStepError
from hil.fita.labels import LABEL_PREFIX, SENSOR_NAMES
from hil.fita.northbound import announce_labels
from hil.gateway import Gateway
from hil.gateway.sdf_mqtt import SdfMqttBridge
from hil.lwm2m.model import ObjLnk

SM = "LWM2M_Software_Management"


def fita_service() -> dict:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA's temperature service is not at {FITA_SERVICE} (shared FITA artifacts absent)")
    return json.loads(FITA_SERVICE.read_bytes())


def unloadable(service: dict) -> dict:
    """The service with an import this firmware does not export: a valid manifest whose install fails."""
    module = base64.b64decode(service["service"]).replace(b"embserve_sleep_impl", b"embserve_sloop_impl")
    return dict(service, service=base64.b64encode(module).decode())


def name(prefix: str = "node") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture
async def probe(broker):
    async with MqttProbe(broker.host, broker.port) as p:
        await p.watch("announce", "unregister")
        yield p


@pytest.fixture
async def bridge(gateway, broker, probe):
    async with SdfMqttBridge(gateway, broker.host, broker.port) as b:
        yield b


# --------------------------------------------------------------------------- announce / unregister


async def test_announce_has_the_shape_the_node_watcher_reads(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep, memory_kb=192, sensors={"temperature": 21.5, "humidity": 40.0}):
        payload = await probe.announce_of(ep)
    assert list(payload) == [ep]
    objects = payload[ep]["sdfObject"]
    device = objects["Device"][0]["sdfProperty"]
    assert device["Memory_Total"] == "192"  # a string: the watcher appends "k"
    assert device["Device_Type"] == "embServe Node"
    caps = objects["DevCapMgmt"]
    # one DevCapMgmt instance lists every sensor, as embServe reports it
    assert caps[0]["sdfProperty"]["Group"] == "0" and caps[0]["sdfProperty"]["Property"] == "2;136"
    assert len(caps) == 1
    assert objects[SM] == []  # present even when empty: the watcher iterates it
    assert objects["Connectivity_Monitoring"] == [{"label": "0"}]
    assert objects["Temperature"] == [{"label": "0"}]
    assert "1" not in objects and "LwM2M Server" not in objects  # LwM2M's own objects stay out


async def test_labels_derived_from_the_announce(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep, sensors={"temperature": 21.5, "accelerometer": 0.0}):
        payload = await probe.announce_of(ep)
    endpoint, labels = announce_labels(json.dumps(payload).encode())
    assert endpoint == ep
    assert labels == {
        LABEL_PREFIX + "embserve": "true",
        LABEL_PREFIX + SENSOR_NAMES[2]: "true",
        LABEL_PREFIX + SENSOR_NAMES[133]: "true",
    }


def test_announce_labels_ignores_non_sensor_groups_and_rejects_bad_payloads():
    payload = {"n1": {"sdfObject": {"DevCapMgmt": [{"label": "0", "sdfProperty": {"Group": "1", "Property": "2"}}]}}}
    assert announce_labels(payload) == ("n1", {LABEL_PREFIX + "embserve": "true"})
    with pytest.raises(ValueError, match="one {endpoint"):
        announce_labels(b'{"a": {}, "b": {}}')


async def test_update_with_new_instances_re_announces_them(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep) as node:
        await probe.announce_of(ep)
        mark = len(probe.seen)
        answer = await probe.call(f"{ep}/{SM}", "POST", {"label": "0"})
        assert answer["response_code"] == 65
        again = await probe.expect(
            "announce listing instance 0", lambda r: r.topic == "announce" and r.json().get(ep, {}).get("sdfObject", {}).get(SM), start=mark
        )
        assert again.json()[ep]["sdfObject"][SM] == [{"label": "0"}]
        assert node.objects.exists("/9/0")


async def test_unregister_on_deregistration(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep):
        await probe.announce_of(ep)
    msg = await probe.unregister_of(ep)
    assert msg.payload == ep.encode()  # the bare endpoint name, not JSON


async def test_unregister_on_lifetime_expiry(broker, probe):
    ep = name()
    async with Gateway(expiry_grace=0.2) as gw, SdfMqttBridge(gw, broker.host, broker.port):
        async with running_node(gw, ep, lifetime=1) as node:
            await probe.announce_of(ep)
            await node.client.stop(deregister=False)  # the node goes silent, as a crashed board would
            await probe.unregister_of(ep)
            assert ep not in gw.registrations


async def test_unregister_for_every_node_when_the_bridge_shuts_down(gateway, broker, probe):
    eps = [name(), name()]
    bridge = await SdfMqttBridge(gateway, broker.host, broker.port).start()
    try:
        async with running_node(gateway, eps[0]), running_node(gateway, eps[1]):
            for ep in eps:
                await probe.announce_of(ep)
            mark = len(probe.seen)
            await bridge.close()
            for ep in eps:
                await probe.unregister_of(ep, start=mark)
    finally:
        await bridge.close()


async def test_nodes_registered_before_the_bridge_starts_are_announced(gateway, broker, probe):
    ep = name()
    async with running_node(gateway, ep):
        async with SdfMqttBridge(gateway, broker.host, broker.port):
            payload = await probe.announce_of(ep)
    assert payload[ep]["sdfObject"]["Device"][0]["sdfProperty"]["Device_Type"] == "embServe Node"


# --------------------------------------------------------------------------- the kubelet's deploy steps


async def test_every_deploy_step_topic_payload_and_code(gateway, bridge, probe):
    service = fita_service()
    ep = name()
    async with running_node(gateway, ep) as node:
        base = f"{ep}/{SM}"
        create = await probe.request(base, {"operation": "POST", "data": {"label": "0"}}, correlation=b"\x00corr-1")
        assert create.json() == {"response_code": 65, "label": "0"}
        assert create.correlation == b"\x00corr-1"  # copied from the request
        assert node.objects.exists("/9/0")

        write = await probe.call(f"{base}/0/Property/Package", "POST", service)
        assert write == {"response_code": 68}
        assert json.loads(node.objects.get("/9/0/2")) == service  # the device holds service.json

        install = await probe.call(f"{base}/0/Action/Install", "POST")
        activate = await probe.call(f"{base}/0/Action/Activate", "POST") if install["response_code"] == 68 else None
        if has_runtime(node):
            assert install["response_code"] == 68 and activate["response_code"] == 68
            state = await probe.call(f"{base}/0", "GET")
            assert state["sdfObject"][SM][0]["sdfProperty"]["Activation_State"] == "true"
        else:
            assert install["response_code"] == 68  # no runtime yet: the device accepts the execute

        listing = await probe.call(base, "GET")
        assert listing["response_code"] == 69 and [e["label"] for e in listing["sdfObject"][SM]] == ["0"]

        remove = await probe.call(f"{base}/0", "DELETE")
        assert remove == {"response_code": 66}
        assert not node.objects.exists("/9/0")
        listing = await probe.call(base, "GET")
        assert listing == {"response_code": 69, "sdfObject": {SM: []}}


async def test_data_given_as_a_string_holding_json_is_accepted(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep) as node:
        # the connection provisioner's form
        answer = await probe.request(f"{ep}/{SM}", None, raw=b'{"operation": "POST", "data": "{\\"label\\": \\"1000\\"}"}')
        assert answer.json()["response_code"] == 65
        assert node.objects.exists("/9/1000")
        package = json.dumps({"name": "demo", "version": 3})
        written = await probe.call(f"{ep}/{SM}/1000/Property/Package", "POST", package)
        assert written["response_code"] == 68
        assert json.loads(node.objects.get("/9/1000/2")) == {"name": "demo", "version": 3}


async def test_device_address_is_a_string(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep):
        answer = await probe.call(f"{ep}/Connectivity_Monitoring/0", "GET")
    assert answer["response_code"] == 69
    entry = answer["sdfObject"]["Connectivity_Monitoring"][0]
    assert entry["sdfProperty"]["IP_Addresses"] == "127.0.0.1"  # the kubelet type-asserts a string


async def test_stats_use_the_sofware_package_key_and_string_fields(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep) as node:
        links = [node.objects.get(f"/35003/{i}/27400") for i in node.objects.instances(35003)]
        # the runtime keeps these up to date; add what is not there yet as the device would
        if ObjLnk(3, 0) not in links:
            node.objects.add_instance(35003, None, {27400: ObjLnk(3, 0), 27401: "7", 27402: "2048", 27403: "42", 27404: "0"})
        node.objects.add_instance(35003, None, {27400: ObjLnk(9, 0), 27401: "3", 27402: "1024", 27403: "12", 27404: "0"})
        answer = await probe.call(f"{ep}/Software_Package_Monitoring", "GET")
    assert answer["response_code"] == 69
    entries = {e["sdfProperty"]["Sofware_Package"]: e["sdfProperty"] for e in answer["sdfObject"]["Software_Package_Monitoring"]}
    assert "Device/0" in entries
    device = entries["Device/0"]
    assert set(device) >= {"CPU_Usage", "Memory_Usage", "Uptime", "Error"}
    assert all(isinstance(v, str) for v in device.values())
    assert entries["LWM2M Software Management/0"]["CPU_Usage"] == "3"


async def test_data_routes_get_post_delete(gateway, bridge, probe):
    ep = name()
    async with running_node(gateway, ep, boot_hook=lambda node: node.objects.add_object(35001)):
        base = f"{ep}/Data_Route"
        created = await probe.call(base, "POST", {"label": "0", "Origin_URI": "coap://a/1", "Destination_URI": "coap://b/2"})
        assert created == {"response_code": 65, "label": "0"}
        listing = await probe.call(base, "GET")
        assert listing == {
            "response_code": 69,
            "sdfObject": {"Data_Route": [{"label": "0", "sdfProperty": {"Origin_URI": "coap://a/1", "Destination_URI": "coap://b/2"}}]},
        }
        changed = await probe.call(f"{base}/0", "POST", {"Destination_URI": "coap://c/3"})
        assert changed == {"response_code": 68}
        one = await probe.call(f"{base}/0", "GET")
        assert one["sdfObject"]["Data_Route"][0]["sdfProperty"]["Destination_URI"] == "coap://c/3"
        assert await probe.call(f"{base}/0", "DELETE") == {"response_code": 66}
        assert await probe.call(base, "GET") == {"response_code": 69, "sdfObject": {"Data_Route": []}}


# --------------------------------------------------------------------------- readings


async def test_readings_are_published_with_value_and_timestamp(gateway, bridge, probe):
    ep = name()
    await probe.watch(f"{ep}/Temperature/+/Property/Sensor_Value")
    async with running_node(gateway, ep, sensors={"temperature": 21.5}) as node:
        await wait_until(lambda: any(k[0] == ep for k in bridge._observations), "the bridge to observe the temperature")
        mark = len(probe.seen)
        await node.shell.run_line("sensor set temperature 25.25")
        msg = await probe.expect("reading 25.25", lambda r: r.topic == f"{ep}/Temperature/0/Property/Sensor_Value" and r.json()["value"] == 25.25, start=mark)
    body = msg.json()
    assert body["Temperature"] == 25.25
    assert isinstance(body["timestamp"], float) and body["timestamp"] > 1.6e9
    assert "operation" not in body
    assert bridge.stats.readings >= 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "topic, payload, code, fragment",
    [
        ("{ep}/Device", b"{not json", 128, "not JSON"),
        ("{ep}/Device", b"[1, 2]", 128, "JSON object"),
        ("{ep}/Device", b'{"data": 1}', 128, "no 'operation'"),
        ("{ep}/Device", b'{"operation": "PATCH"}', 133, "PATCH"),
        ("{ep}/Bogus_Object", b'{"operation": "GET"}', 132, "Bogus_Object"),
        ("nobody-{ep}/Device", b'{"operation": "GET"}', 132, "not registered"),
        ("{ep}/Device/0/Property/Nope", b'{"operation": "GET"}', 132, "Nope"),
        ("{ep}/Device/0/Property/Reboot", b'{"operation": "GET"}', 133, "action"),
        ("{ep}/Device/0/Action/Memory_Total", b'{"operation": "POST"}', 133, "property"),
        ("{ep}/Device", b'{"operation": "DELETE"}', 133, "whole object"),
        ("{ep}/LWM2M_Software_Management/x", b'{"operation": "GET"}', 128, "instance label"),
        ("{ep}/LWM2M_Software_Management/7", b'{"operation": "GET"}', 132, ""),  # the device's own 4.04
        ("{ep}/LWM2M_Software_Management/0/Frob/Package", b'{"operation": "GET"}', 128, "Property or Action"),
        ("{ep}/1/0/Property/Lifetime", b'{"operation": "POST", "data": "soon"}', 128, "integer"),
    ],
)
async def test_bad_requests_get_an_error_code_and_the_bridge_goes_on(gateway, bridge, probe, topic, payload, code, fragment):
    ep = name()
    async with running_node(gateway, ep):
        answer = (await probe.request(topic.format(ep=ep), None, raw=payload)).json()
        assert answer["response_code"] == code, answer
        assert fragment in answer.get("error", ""), answer
        healthy = await probe.call(f"{ep}/Device/0/Property/Device_Type", "GET")
    assert healthy["sdfObject"]["Device"][0]["sdfProperty"]["Device_Type"] == "embServe Node"


async def test_request_without_response_topic_is_carried_out_and_logged(gateway, bridge, probe, caplog):
    caplog.set_level(logging.INFO, logger="hil.gateway.sdf")
    ep = name()
    async with running_node(gateway, ep) as node:
        assert (await probe.call(f"{ep}/{SM}", "POST", {"label": "3"}))["response_code"] == 65
        # the node watcher cleans leftover packages this way: no ResponseTopic
        probe.client.publish(f"{ep}/{SM}/3", b'{"operation":"DELETE"}', qos=1)
        probe.client.publish(f"{ep}/Device", b"garbage", qos=1)
        await wait_until(lambda: not node.objects.exists("/9/3"), "/9/3 to be deleted")
        await wait_until(lambda: caplog.text.count("has no ResponseTopic") >= 2, "both requests to be logged")
        answer = await probe.call(f"{ep}/Device/0/Property/Memory_Total", "GET")
    assert answer["response_code"] == 69
    assert "'response_code': 66" in caplog.text and "'response_code': 128" in caplog.text


# --------------------------------------------------------------------------- the MQTT deploy channel


async def test_channel_steps_and_failures_name_the_response_code(gateway, bridge, broker):
    ep = name()
    async with running_node(gateway, ep) as node, MqttChannel(broker.host, broker.port) as channel:
        assert await channel.instances(ep) == []
        await channel.create(ep, 0)
        assert node.objects.exists("/9/0")
        assert await channel.instances(ep) == [0]
        info = await channel.read_instance(ep, 0)
        assert info[12] is False and info[7] == 0  # typed back from the SDF strings
        with pytest.raises(DeployStepError) as duplicate:
            await channel.create(ep, 0)
        assert duplicate.value.endpoint == ep and duplicate.value.step == "create /9/0"
        assert "128 (4.00)" in str(duplicate.value)
        with pytest.raises(DeployStepError, match="not JSON"):
            await channel.write_package(ep, 0, b"\x00not json")
        await channel.delete(ep, 0)
        assert not node.objects.exists("/9/0")
        with pytest.raises(DeployStepError, match=r"132 \(4\.04\)"):
            await channel.delete(ep, 0)
        with pytest.raises(DeployStepError, match="not registered"):
            await channel.create("nobody-" + ep, 0)
        labels = await channel.labels(ep)
        assert labels[LABEL_PREFIX + "embserve"] == "true"


async def test_channel_step_times_out_when_no_gateway_answers(broker):
    async with MqttChannel(broker.host, broker.port, step_timeout=0.3) as channel:
        with pytest.raises(DeployStepError, match="no answer on ghost/LWM2M_Software_Management within 0.3 s") as err:
            await channel.create("ghost", 0)
    assert err.value.step == "create /9/0"


async def test_fifty_nodes_create_and_delete_concurrently_over_mqtt(gateway, bridge, broker):
    eps = [name("fifty") for _ in range(50)]
    async with many_nodes(gateway, eps) as nodes, MqttChannel(broker.host, broker.port) as channel:
        await asyncio.gather(*(channel.create(ep, 0) for ep in eps))
        assert all(n.objects.exists("/9/0") for n in nodes)
        listed = await asyncio.gather(*(channel.instances(ep) for ep in eps))
        assert listed == [[0]] * 50
        await asyncio.gather(*(channel.delete(ep, 0) for ep in eps))
        assert not any(n.objects.exists("/9/0") for n in nodes)


async def test_fifty_nodes_deploy_concurrently_over_mqtt(gateway, bridge, broker):
    from hil.faredge.deployer import Deployer

    service = FITA_SERVICE if FITA_SERVICE.is_file() else None
    if service is None:
        pytest.skip(f"FITA's temperature service is not at {FITA_SERVICE}")
    eps = [name("deploy") for _ in range(50)]
    async with many_nodes(gateway, eps) as nodes:
        if not has_runtime(nodes[0]):
            pytest.skip("the simulated node's object 9 is not wired to the service runtime yet")
        async with Deployer(gateway, via="mqtt", broker=(broker.host, broker.port)) as deployer:
            done = await asyncio.gather(*(deployer.deploy(service, ep) for ep in eps))
        assert [d.instance for d in done] == [0] * 50
        assert all(n.objects.get("/9/0/12") is True for n in nodes)


async def kubelet_deploy(probe: MqttProbe, ep: str, inst: int, service: object) -> list[tuple[str, int]]:
    """The kubelet's DeployPackage: create, write, install, activate; on the first failure, remove."""
    base = f"{ep}/{SM}"
    steps = [
        ("create", base, {"label": str(inst)}, 65),
        ("write", f"{base}/{inst}/Property/Package", service, 68),
        ("install", f"{base}/{inst}/Action/Install", None, 68),
        ("activate", f"{base}/{inst}/Action/Activate", None, 68),
    ]
    codes = []
    for step, topic, data, success in steps:
        code = (await probe.call(topic, "POST", data))["response_code"]
        codes.append((step, code))
        if code != success:
            if step != "create":
                codes.append(("remove", (await probe.call(f"{base}/{inst}", "DELETE"))["response_code"]))
            break
    return codes


async def test_a_deploy_whose_install_fails_gets_a_failure_code_and_leaves_no_instance(gateway, bridge, probe):
    service = fita_service()
    ep = name()
    async with running_node(gateway, ep) as node:
        if not has_runtime(node):
            pytest.skip("the simulated node's object 9 is not wired to the service runtime yet")
        codes = await kubelet_deploy(probe, ep, 0, unloadable(service))
        listing = await probe.call(f"{ep}/{SM}", "GET")
        assert not node.objects.exists("/9/0")
    failed = [(step, code) for step, code in codes if code not in (65, 66, 68, 69)]
    assert failed and failed[0][0] in ("install", "activate"), codes  # OMA: Install answers 2.04, the result says 54
    assert codes[-1] == ("remove", 66), codes
    assert listing == {"response_code": 69, "sdfObject": {SM: []}}


async def test_a_good_deploy_runs_the_service_and_publishes_readings(gateway, bridge, probe):
    service = fita_service()
    ep = name()
    await probe.watch(f"{ep}/Temperature/+/Property/Sensor_Value")
    async with running_node(gateway, ep) as node:
        if not has_runtime(node):
            pytest.skip("the simulated node's object 9 is not wired to the service runtime yet")
        codes = await kubelet_deploy(probe, ep, 0, service)
        assert codes == [("create", 65), ("write", 68), ("install", 68), ("activate", 68)]
        state = (await probe.call(f"{ep}/{SM}/0", "GET"))["sdfObject"][SM][0]["sdfProperty"]
        assert state["Activation_State"] == "true" and state["PkgName"] == service["name"]
        stats = (await probe.call(f"{ep}/Software_Package_Monitoring", "GET"))["sdfObject"]["Software_Package_Monitoring"]
        assert "LWM2M Software Management/0" in [e["sdfProperty"]["Sofware_Package"] for e in stats]


async def test_deployer_over_mqtt_rolls_back_a_failed_install(gateway, bridge, broker):
    from hil.faredge.deployer import Deployer, DeployError

    service = fita_service()
    ep = name()
    async with running_node(gateway, ep) as node:
        if not has_runtime(node):
            pytest.skip("the simulated node's object 9 is not wired to the service runtime yet")
        broken = json.dumps(unloadable(service)).encode()
        async with Deployer(gateway, via="mqtt", broker=(broker.host, broker.port)) as deployer:
            with pytest.raises(DeployError, match="the instance was removed") as failed:
                await deployer.deploy(broken, ep)
        assert "Update Result 54" in str(failed.value)
        assert node.objects.instances(9) == []
