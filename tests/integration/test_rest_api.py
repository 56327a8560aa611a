"""The gateway's Leshan-style REST API, call by call, as the kubelet and the node watcher use it in leshan mode.

Real gateway and simulated nodes; HTTP through aiohttp's client on loopback.
"""

from __future__ import annotations

import asyncio
import json
import secrets

import aiohttp
import pytest
from conftest import FITA_SERVICE, WAIT
from northbound_helpers import has_runtime, running_node

from hil.faredge.channel_rest import RestChannel
from hil.faredge.channels import DeployStepError
from hil.fita.labels import LABEL_PREFIX, SENSOR_NAMES
from hil.gateway import Gateway
from hil.gateway.rest import RestApi
from hil.infra.ports import unused_port
from hil.lwm2m.model import ObjLnk



def name() -> str:
    return f"rest-{secrets.token_hex(3)}"


@pytest.fixture
async def api(gateway):
    async with RestApi(gateway) as rest:
        yield rest


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[int, dict]:
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


# --------------------------------------------------------------------------- registrations


async def test_clients_list_and_one_client(gateway, api, http):
    ep = name()
    async with running_node(gateway, ep, lifetime=120):
        status, clients = await call(http, "GET", f"{api.url}/api/clients")
        assert status == 200
        mine = [c for c in clients if c["endpoint"] == ep]
        assert len(mine) == 1
        status, one = await call(http, "GET", f"{api.url}/api/clients/{ep}")
    assert status == 200 and one == mine[0]
    assert one["registrationId"] and isinstance(one["registrationId"], str)
    assert isinstance(one["registrationDate"], int) and isinstance(one["lastUpdate"], int)  # the kubelet decodes int64
    assert one["lifetime"] == 120 and one["lwM2mVersion"] == "1.1" and one["bindingMode"] == "U"
    assert one["address"].startswith("127.0.0.1:")
    urls = [link["url"] for link in one["objectLinks"]]
    assert "/3/0" in urls and "/9" in urls  # the watcher looks for "/9" among the urls
    assert one["availableInstances"]["9"] == [] and one["availableInstances"]["3"] == [0]
    assert one["availableInstances"]["4"] == [0]


async def test_unknown_client_is_404_with_the_envelope(api, http):
    status, body = await call(http, "GET", f"{api.url}/api/clients/nobody")
    assert status == 404
    assert body["success"] is False and body["status"] == "NOT_FOUND" and "nobody" in body["errormessage"]
    status, body = await call(http, "GET", f"{api.url}/api/clients/nobody/3/0/17")
    assert status == 404 and body["success"] is False


# --------------------------------------------------------------------------- reads


async def test_reads_as_the_node_watcher_and_kubelet_do(gateway, api, http):
    ep = name()
    async with running_node(gateway, ep, memory_kb=128) as node:
        base = f"{api.url}/api/clients/{ep}"
        status, device_type = await call(http, "GET", f"{base}/3/0/17")
        assert status == 200
        assert device_type == {
            "status": "CONTENT", "valid": True, "success": True, "failure": False,
            "content": {"kind": "singleResource", "id": 17, "type": "STRING", "value": "embServe Node"},
        }
        _, memory = await call(http, "GET", f"{base}/3/0/21")
        assert str(memory["content"]["value"]) == "128"

        _, connectivity = await call(http, "GET", f"{base}/4/0", params={"format": "TLV"})
        content = connectivity["content"]
        assert content["kind"] == "instance" and content["id"] == 0
        addresses = next(r for r in content["resources"] if r["id"] == 4)
        assert addresses == {"kind": "multiResource", "id": 4, "type": "STRING", "values": {"0": "127.0.0.1"}}

        node.objects.add_instance(35003, 4, {27400: ObjLnk(9, 1000), 27401: "3", 27402: "1024", 27403: "12", 27404: "0"})
        _, stats = await call(http, "GET", f"{base}/35003/4", params={"format": "TLV"})
        resources = {r["id"]: r for r in stats["content"]["resources"]}
        assert resources[27400]["value"] == {"objectId": 9, "objectInstanceId": 1000}
        assert resources[27401]["value"] == "3" and resources[27404]["value"] == "0"

        _, whole = await call(http, "GET", f"{base}/15")
        assert whole["content"]["kind"] == "obj" and [i["id"] for i in whole["content"]["instances"]] == [0]

        _, senml = await call(http, "GET", f"{base}/3/0/17", params={"format": "SENML_JSON"})
        assert senml["content"]["value"] == "embServe Node"


async def test_device_errors_are_200_with_success_false(gateway, api, http):
    ep = name()
    async with running_node(gateway, ep):
        status, body = await call(http, "GET", f"{api.url}/api/clients/{ep}/9/42")
    assert status == 200
    assert body["status"] == "NOT_FOUND" and body["success"] is False and body["failure"] is True


@pytest.mark.parametrize(
    "method, path, kwargs, fragment",
    [
        ("GET", "/3/0/17", {"params": {"format": "XML"}}, "format='XML'"),
        ("GET", "/3/0/17", {"params": {"timeout": "soon"}}, "timeout='soon'"),
        ("PUT", "/9/1000/2", {"data": b"{nope"}, "not JSON"),
        ("PUT", "/9/1000/2", {"json": {"id": 3, "kind": "singleResource", "value": "00", "type": "opaque"}}, "does not match"),
        ("PUT", "/9/1000/2", {"json": {"id": 2, "kind": "singleResource", "value": "zz", "type": "opaque"}}, "not a valid opaque"),
        ("POST", "/9", {"json": {"id": 1000, "kind": "singleResource", "value": 1}}, "kind instance"),
        ("PUT", "/9", {"json": {"id": 1000, "kind": "instance", "resources": []}}, "instance or resource path"),
    ],
)
async def test_malformed_requests_are_400(gateway, api, http, method, path, kwargs, fragment):
    ep = name()
    async with running_node(gateway, ep):
        status, body = await call(http, method, f"{api.url}/api/clients/{ep}{path}", **kwargs)
    assert status == 400, body
    assert body["success"] is False and fragment in body["errormessage"]


# --------------------------------------------------------------------------- the kubelet's deploy calls


async def test_create_write_execute_delete_with_the_kubelets_bodies(gateway, api, http):
    ep = name()
    package = json.dumps({"name": "demo", "version": 1}).encode()
    async with running_node(gateway, ep) as node:
        base = f"{api.url}/api/clients/{ep}"
        status, created = await call(http, "POST", f"{base}/9", params={"timeout": "5", "format": "TLV"},
                                     json={"id": 1000, "kind": "instance", "resources": []})
        assert status == 200 and created["status"] == "CREATED" and created["success"] is True
        assert node.objects.exists("/9/1000")

        status, written = await call(http, "PUT", f"{base}/9/1000/2", params={"timeout": "300", "format": "TLV"},
                                     json={"id": 2, "kind": "singleResource", "value": package.hex(), "type": "opaque"})
        assert written["status"] == "CHANGED" and written["success"] is True
        assert node.objects.get("/9/1000/2") == package

        status, installed = await call(http, "POST", f"{base}/9/1000/4", params={"timeout": "5", "format": "TLV"},
                                       headers={"Content-Type": "application/json"})
        assert status == 200 and installed["status"] in ("CHANGED", "BAD_REQUEST", "INTERNAL_SERVER_ERROR")
        if not has_runtime(node):
            assert installed["status"] == "CHANGED"

        status, deleted = await call(http, "DELETE", f"{base}/9/1000", params={"timeout": "5"})
        assert deleted["status"] == "DELETED" and deleted["success"] is True
        assert not node.objects.exists("/9/1000")
        _, gone = await call(http, "GET", f"{base}/9/1000")
        assert gone["status"] == "NOT_FOUND"


async def test_partial_update_and_replace_of_an_instance(gateway, api, http):
    ep = name()
    async with running_node(gateway, ep, boot_hook=lambda n: n.objects.add_object(35001)) as node:
        base = f"{api.url}/api/clients/{ep}/35001"
        route = {"id": 0, "kind": "instance", "resources": [
            {"id": 0, "kind": "singleResource", "type": "STRING", "value": "coap://a/1"},
            {"id": 1, "kind": "singleResource", "type": "STRING", "value": "coap://b/2"},
        ]}
        _, created = await call(http, "POST", base, json=route)
        assert created["status"] == "CREATED"
        _, updated = await call(http, "POST", f"{base}/0", json={"id": 0, "kind": "instance", "resources": [
            {"id": 1, "kind": "singleResource", "value": "coap://c/3"}]})
        assert updated["status"] == "CHANGED"
        assert node.objects.get("/35001/0/0") == "coap://a/1" and node.objects.get("/35001/0/1") == "coap://c/3"
        _, read = await call(http, "GET", f"{base}/0")
        values = {r["id"]: r["value"] for r in read["content"]["resources"]}
    assert values == {0: "coap://a/1", 1: "coap://c/3"}


# --------------------------------------------------------------------------- events


async def sse_events(http: aiohttp.ClientSession, url: str, events: asyncio.Queue) -> None:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name, data = None, []
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "":
                if name is not None:
                    events.put_nowait((name, json.loads("\n".join(data))))
                elif data == [] and not events.qsize():
                    events.put_nowait(("open", None))
                name, data = None, []


async def next_event(events: asyncio.Queue, kind: str, endpoint: str) -> dict:
    seen = []
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            name, data = await asyncio.wait_for(events.get(), max(remaining, 0.01))
        except TimeoutError:
            raise AssertionError(f"no {kind} event for {endpoint} within {WAIT} s; saw {seen}") from None
        seen.append(name)
        reg = (data or {}).get("registration", data) if isinstance(data, dict) else None
        if name == kind and reg and reg.get("endpoint") == endpoint:
            return data


async def test_server_sent_events_for_registration_and_deregistration(gateway, api, http):
    events: asyncio.Queue = asyncio.Queue()
    reader = asyncio.ensure_future(sse_events(http, f"{api.url}/api/event", events))
    try:
        name_, _ = await asyncio.wait_for(events.get(), WAIT)
        assert name_ == "open"
        ep = name()
        async with running_node(gateway, ep):
            registered = await next_event(events, "REGISTRATION", ep)
            assert registered["registrationId"] == gateway.registration(ep).registration_id
            assert "/9" in [link["url"] for link in registered["objectLinks"]]
        gone = await next_event(events, "DEREGISTRATION", ep)
        assert gone["endpoint"] == ep and gone["registrationId"] == registered["registrationId"]
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_expiry_is_a_deregistration_event(http):
    ep = name()
    events: asyncio.Queue = asyncio.Queue()
    async with Gateway(expiry_grace=0.2) as gw, RestApi(gw) as rest:
        reader = asyncio.ensure_future(sse_events(http, f"{rest.url}/api/event", events))
        try:
            await asyncio.wait_for(events.get(), WAIT)
            async with running_node(gw, ep, lifetime=1) as node:
                await next_event(events, "REGISTRATION", ep)
                await node.client.stop(deregister=False)
                gone = await next_event(events, "DEREGISTRATION", ep)
            assert gone["endpoint"] == ep
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_event_streams_end_when_the_api_closes(gateway, http):
    api = await RestApi(gateway).start()
    try:
        async with http.get(f"{api.url}/api/event") as response:
            await response.content.readline()
            await api.close()
            rest = await asyncio.wait_for(response.content.read(), WAIT)
        assert rest in (b"", b"\n")
    finally:
        await api.close()


# --------------------------------------------------------------------------- the REST deploy channel


async def test_channel_steps_and_failures(gateway, api):
    ep = name()
    package = json.dumps({"name": "demo", "version": 2}).encode()
    async with running_node(gateway, ep, sensors={"temperature": 20.0, "humidity": 50.0}) as node:
        async with RestChannel(api.url + "/api") as channel:
            assert await channel.instances(ep) == []
            await channel.create(ep, 1000)
            await channel.write_package(ep, 1000, package)
            assert node.objects.get("/9/1000/2") == package
            info = await channel.read_instance(ep, 1000)
            assert info[12] is False and info[0] == ""
            with pytest.raises(DeployStepError) as duplicate:
                await channel.create(ep, 1000)
            assert duplicate.value.step == "create /9/1000" and "BAD_REQUEST" in str(duplicate.value)
            await channel.delete(ep, 1000)
            assert not node.objects.exists("/9/1000")
            with pytest.raises(DeployStepError, match="HTTP 404"):
                await channel.create("nobody", 1000)
            labels = await channel.labels(ep)
    assert labels == {
        LABEL_PREFIX + "embserve": "true",
        LABEL_PREFIX + SENSOR_NAMES[2]: "true",
        LABEL_PREFIX + SENSOR_NAMES[136]: "true",
    }


async def test_channel_reports_an_unreachable_api():
    port = unused_port()
    async with RestChannel(f"http://127.0.0.1:{port}/api", step_timeout=2.0) as channel:
        with pytest.raises(DeployStepError, match=f"127.0.0.1:{port}") as err:
            await channel.instances("n1")
    assert err.value.step == "read registration"


async def test_full_deploy_over_rest(gateway, api):
    from hil.faredge.deployer import Deployer

    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA's temperature service is not at {FITA_SERVICE}")
    ep = name()
    async with running_node(gateway, ep) as node:
        if not has_runtime(node):
            pytest.skip("the simulated node's object 9 is not wired to the service runtime yet")
        async with Deployer(gateway, via="rest", rest_url=api.url) as deployer:
            done = await deployer.deploy(FITA_SERVICE, ep)
        assert done.instance == 1000
        assert node.objects.get("/9/1000/12") is True
