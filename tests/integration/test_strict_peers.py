"""LwM2M as strict peers speak it, on real UDP: content formats, strict servers, TLV-less clients.

The strict server is the project's gateway with :class:`StrictRegistration`
(what servers such as Wakaama check: ``ct`` only for optional formats, 4.12
for an LwM2M version they do not support); the TLV-less client is the
simulated node built with ``formats=(SENML_JSON,)``, which answers 4.06/4.15
to TLV as a 1.1 client without TLV does.
"""

from __future__ import annotations

import asyncio

import aiohttp
import aiocoap
import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from conftest import WAIT, wait_until
from northbound_helpers import MqttProbe

from hil.device.node import Node
from hil.gateway import Gateway, GatewayRequestError
from hil.gateway.rest import RestApi
from hil.gateway.sdf_mqtt import SdfMqttBridge
from hil.gateway.strict import StrictRegistration
from hil.lwm2m import codecs
from hil.lwm2m.codecs import SENML_CBOR, SENML_JSON, TLV
from hil.lwm2m.link import announced_formats
from hil.lwm2m.model import Path


async def register_raw(gw: Gateway, links: str, version: str = "1.1") -> Message:
    """A Register of our own, to see the strict server's answer to exactly these links."""
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        request = Message(code=Code.POST, uri=f"{gw.uri}/rd?ep=raw&lt=60&lwm2m={version}&b=U",
                          payload=links.encode(), content_format=codecs.LINK)
        return await asyncio.wait_for(ctx.request(request).response, WAIT)
    finally:
        await ctx.shutdown()


def with_data_routes(node: Node) -> None:
    """embServe's Data Route object (35001), which the server creates instances of."""
    node.objects.add_object(35001)


async def registered_node(gw: Gateway, endpoint: str, **kwargs) -> Node:
    node = Node(endpoint, **kwargs)
    node.add_boot_hook(with_data_routes)
    await node.start()
    await node.connect(gw.uri)
    await node.wait_registered(WAIT)
    return node


# --------------------------------------------------------------------------- strict servers


async def test_strict_server_takes_ct_only_for_optional_formats_and_the_node_registers():
    async with Gateway(registration_policy=StrictRegistration()) as gw:
        refused = await register_raw(gw, '</>;rt="oma.lwm2m";ct=11542,</3/0>')
        assert refused.code == Code.BAD_REQUEST and b"ct=11542" in refused.payload
        assert (await register_raw(gw, '</>;rt="oma.lwm2m";ct=110,</3/0>')).code == Code.CREATED
        assert (await register_raw(gw, '</>;rt="oma.lwm2m",</3/0>')).code == Code.CREATED
        # the simulated node, as it is: announces the one optional format it prefers
        node = await registered_node(gw, "strict1")
        try:
            reg = gw.registration("strict1")
            assert reg.object_links[0].attrs == {"rt": "oma.lwm2m", "ct": "112"}
            assert (await gw.read("strict1", "/3/0"))[Path(3, 0, 17)] == "embServe Node"
        finally:
            await node.aclose()
        node = await registered_node(gw, "strict2", formats=(TLV, SENML_JSON))  # prefers TLV: nothing to announce
        try:
            assert announced_formats(gw.registration("strict2").object_links) == ()
        finally:
            await node.aclose()


async def test_node_registers_as_1_0_with_a_server_that_refuses_1_1():
    async with Gateway(registration_policy=StrictRegistration(versions=("1.0",))) as gw:
        assert (await register_raw(gw, "</3/0>", "1.1")).code == Code.PRECONDITION_FAILED
        node = await registered_node(gw, "old1")
        try:
            reg = gw.registration("old1")
            assert reg.lwm2m_version == "1.0" and announced_formats(reg.object_links) == ()
            assert "4.12" in node.client.last_error or node.client.version == "1.0"
            plain = await gw.read_raw("old1", "/3/0/17")  # no Accept: a 1.0 client answers TLV
            assert plain.content_format == TLV
            assert (await gw.read("old1", "/3/0"))[Path(3, 0, 17)] == "embServe Node"  # chosen: TLV
        finally:
            await node.aclose()


# --------------------------------------------------------------------------- a TLV-less 1.1 client


async def test_tlv_less_client_through_the_python_api():
    async with Gateway(registration_policy=StrictRegistration()) as gw:
        node = await registered_node(gw, "nontlv", formats=(SENML_JSON,))
        try:
            assert announced_formats(gw.registration("nontlv").object_links) == (SENML_JSON,)
            # the client really refuses TLV ...
            with pytest.raises(GatewayRequestError, match="4.06"):
                await gw.read("nontlv", "/3/0", fmt="tlv")
            with pytest.raises(GatewayRequestError, match="4.15"):
                await gw.write("nontlv", "/3303/0", {Path(3303, 0, 5750): "x"}, replace=False, fmt="tlv")
            # ... and the gateway asks in what it announced
            device = await gw.read("nontlv", "/3/0")
            assert device[Path(3, 0, 17)] == "embServe Node"
            assert await gw.read("nontlv", "/3/0/17") == {Path(3, 0, 17): "embServe Node"}
            await gw.write("nontlv", "/3303/0/5750", "greenhouse")
            await gw.write("nontlv", "/3303/0", {Path(3303, 0, 5750): "roof"}, replace=False)
            assert node.objects.get("/3303/0/5750") == "roof"
            assert await gw.create("nontlv", "/35001", {Path(35001, 4, 0): "a", Path(35001, 4, 1): "b"}) == Path(35001, 4)
            assert node.objects.get("/35001/4/1") == "b"
            assert await gw.create("nontlv", "/9", instance_id=1000) == Path(9, 1000)  # an id and no values
            async with gw.observe("nontlv", "/3303/0/5700") as obs:
                assert (await obs.next(WAIT)).content_format == SENML_JSON  # the current value first
                node.sensors["temperature"].set(30.5)
                assert (await obs.next(WAIT)).value() == 30.5
        finally:
            await node.aclose()


async def test_a_refused_format_makes_the_gateway_fall_back_once_and_remember():
    async with Gateway() as gw:
        # a TLV-less client that names no format: the gateway must find out
        node = await registered_node(gw, "quiet", formats=(SENML_JSON,), announce_format=False)
        try:
            reg = gw.registration("quiet")
            assert gw.formats.candidates(reg, Path(3, 0), "multi")[0] == TLV  # the field's default first
            assert (await gw.read("quiet", "/3/0"))[Path(3, 0, 17)] == "embServe Node"  # 4.06, then SenML JSON
            assert gw.formats.candidates(reg, Path(3, 0), "multi")[0] == SENML_JSON
            assert TLV not in gw.formats.candidates(reg, Path(3303, 0), "multi")
            await gw.write("quiet", "/3303/0", {Path(3303, 0, 5750): "cellar"}, replace=False)  # straight in JSON
            assert node.objects.get("/3303/0/5750") == "cellar"
            with pytest.raises(GatewayRequestError, match="4.06"):
                await gw.read("quiet", "/3/0", fmt="tlv")  # a format the caller names is used as it is
        finally:
            await node.aclose()


async def test_tlv_less_client_through_rest_and_mqtt(gateway, broker):
    async with MqttProbe(broker.host, broker.port) as probe, SdfMqttBridge(gateway, broker.host, broker.port), \
            RestApi(gateway) as api, aiohttp.ClientSession() as http:
        await probe.watch("announce", "nontlv2/Temperature/+/Property/#")
        node = await registered_node(gateway, "nontlv2", formats=(SENML_JSON,))
        try:
            announce = await probe.announce_of("nontlv2")
            assert announce["nontlv2"]["sdfObject"]["Device"][0]["sdfProperty"]["Device_Type"] == "embServe Node"
            base = f"{api.url}/api/clients/nontlv2"
            async with http.get(f"{base}/3/0") as r:
                body = await r.json()
            assert body["status"] == "CONTENT", body
            async with http.post(f"{base}/35001", json={"id": 7, "kind": "instance", "resources": [
                    {"id": 0, "kind": "singleResource", "value": "o"}, {"id": 1, "kind": "singleResource", "value": "d"}]}) as r:
                assert (await r.json())["status"] == "CREATED"
            route = {"id": 8, "kind": "instance", "resources": [{"id": 0, "kind": "singleResource", "value": "x"},
                                                                {"id": 1, "kind": "singleResource", "value": "y"}]}
            async with http.post(f"{base}/35001", params={"format": "TLV"}, json=route) as r:
                assert (await r.json())["status"] == "UNSUPPORTED_CONTENT_FORMAT"  # the format asked for is used
            async with http.post(f"{base}/35001", params={"format": "SENML_JSON"}, json=route) as r:
                assert (await r.json())["status"] == "CREATED"
            async with http.put(f"{base}/35001/7/0", json={"id": 0, "kind": "singleResource", "value": "o2"}) as r:
                assert (await r.json())["status"] == "CHANGED"
            assert node.objects.get("/35001/7/0") == "o2"
            answer = await probe.call("nontlv2/Device/0", "GET")
            assert answer["response_code"] == 69 and answer["sdfObject"]["Device"][0]["sdfProperty"]["Manufacturer"]
            created = await probe.call("nontlv2/LWM2M_Software_Management", "POST", {"label": "0"})
            assert created == {"response_code": 65, "label": "0"}
            routes = await probe.call("nontlv2/Data_Route/7", "GET")
            assert routes["sdfObject"]["Data_Route"][0]["sdfProperty"]["Origin_URI"] == "o2"
            # observed through REST (and by the bridge, for its readings) in the format the client speaks
            async with http.post(f"{base}/3303/0/5700/observe") as r:
                assert (await r.json())["content"]["value"] == 21.5
            node.sensors["temperature"].set(27.0)
            reading = await probe.expect("a reading on MQTT", lambda m: m.topic == "nontlv2/Temperature/0/Property/Sensor_Value")
            assert reading.json()["Temperature"] == 27.0
            async with http.delete(f"{base}/3303/0/5700/observe") as r:
                assert (await r.json())["status"] == "CONTENT"
        finally:
            await node.aclose()


# --------------------------------------------------------------------------- composite operations


async def test_composite_operations_through_the_gateway_and_rest():
    async with Gateway() as gw, RestApi(gw) as api, aiohttp.ClientSession() as http:
        node = await registered_node(gw, "comp")
        try:
            content = await gw.read_composite("comp", ["/3/0/17", "/3303/0", "/1/0/1"])
            assert content[Path(3, 0, 17)] == "embServe Node" and content[Path(3303, 0, 5700)] == 21.5
            assert content[Path(1, 0, 1)] == 300
            assert (await gw.read_composite("comp", ["/3/0/0"], fmt="senml")) == {Path(3, 0, 0): "embserve-hil"}
            await gw.write_composite("comp", {"/3303/0/5750": "attic", "/3/0/14": "+01:00"})
            assert node.objects.get("/3303/0/5750") == "attic" and node.objects.get("/3/0/14") == "+01:00"
            async with gw.observe_composite("comp", ["/3303/0/5700", "/3/0/14"]) as obs:
                assert (await obs.next(WAIT)).content[Path(3, 0, 14)] == "+01:00"
                node.sensors["temperature"].set(25.0)
                note = await obs.next(WAIT)
                assert note.path is None and note.value("/3303/0/5700") == 25.0 and Path(3, 0, 14) in note.content
            async with http.get(f"{api.url}/api/clients/comp/composite", params={"paths": "/3/0/17,/3303/0/5700"}) as r:
                body = await r.json()
            assert body["status"] == "CONTENT", body
            assert body["content"]["/3/0/17"]["value"] == "embServe Node" and body["content"]["/3303/0/5700"]["type"] == "FLOAT"
            async with http.put(f"{api.url}/api/clients/comp/composite", params={"format": "SENML_JSON"},
                                json={"/3303/0/5750": "cellar", "/3/0/14": {"value": "+02:00"}}) as r:
                assert (await r.json())["status"] == "CHANGED"
            assert node.objects.get("/3/0/14") == "+02:00"
            async with http.post(f"{api.url}/api/clients/comp/composite/observe", params={"paths": "/3303/0/5700"}) as r:
                assert (await r.json())["content"]["/3303/0/5700"]["value"] == 25.0
            async with http.delete(f"{api.url}/api/clients/comp/composite/observe", params={"paths": "/3303/0/5700"}) as r:
                assert (await r.json())["status"] == "CONTENT"
        finally:
            await node.aclose()


async def test_unknown_objects_are_labelled_with_the_payloads_own_type():
    from hil.gateway import leshan

    content = codecs.decode(b'[{"bn":"/31024/10/","n":"3","v":-30.0},{"n":"4","v":7},{"n":"5","vs":"x"}]', Path(31024, 10),
                            SENML_JSON)
    node = leshan.node_json(content, Path(31024, 10))
    assert [(r["id"], r["type"], r["value"]) for r in node["resources"]] == [(3, "FLOAT", -30.0), (4, "INTEGER", 7),
                                                                              (5, "STRING", "x")]
    # /3/0/6 is in the OMA definitions: Available Power Sources, a multiple Integer
    power = leshan.node_json({Path(3, 0, 6, 0): 1, Path(3, 0, 6, 1): 5}, Path(3, 0, 6))
    assert power == {"kind": "multiResource", "id": 6, "type": "INTEGER", "values": {"0": 1, "1": 5}}
    text = codecs.decode(b"21.5", Path(31024, 10, 3), codecs.TEXT)  # text of an unknown resource: its number
    assert text == {Path(31024, 10, 3): 21.5}


@pytest.mark.parametrize("fmt", [SENML_CBOR, SENML_JSON])
async def test_send_is_refused_from_an_unregistered_address_and_in_other_formats(fmt):
    async with Gateway() as gw:
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            payload = codecs.encode({Path(3303, 0, 5700): 1.0}, None, fmt)
            request = Message(code=Code.POST, uri=f"{gw.uri}/dp", payload=payload, content_format=fmt)
            answer = await asyncio.wait_for(ctx.request(request).response, WAIT)
            assert answer.code == Code.NOT_FOUND and b"register first" in answer.payload
        finally:
            await ctx.shutdown()
        node = await registered_node(gw, "sender")
        try:
            await wait_until(lambda: node.registered, "the node to register")
            got: list = []
            gw.add_report_listener(got.append)
            node.client.formats = (fmt,)
            await node.client.send({Path(3303, 0, 5700): 22.5, Path(3, 0, 17): "embServe Node"})
            assert got[-1].kind == "send" and got[-1].content_format == fmt
            assert got[-1].content == {Path(3303, 0, 5700): 22.5, Path(3, 0, 17): "embServe Node"}
        finally:
            await node.aclose()
