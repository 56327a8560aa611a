"""The gateway's LwM2M server against a small LwM2M client, over real UDP on loopback.

:class:`LwM2MTestClient` is a minimal LwM2M client written here on aiocoap
(not a stand-in for the gateway): it registers, and serves Read, Discover,
Write, Write-Attributes, Execute, Create, Delete and Observe on an in-memory
object tree.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiocoap
import pytest
from aiocoap import Message
from aiocoap.interfaces import ObservableResource
from aiocoap.numbers.codes import Code
from aiocoap.resource import PathCapable, Resource
from conftest import wait_until

from hil.gateway import (
    Gateway,
    GatewayDecodeError,
    GatewayRequestError,
    GatewayTimeout,
    ObservationRefused,
    UnknownEndpoint,
)
from hil.lwm2m import codecs, tlv
from hil.lwm2m.link import Link, format_links, registration_links
from hil.lwm2m.model import LwM2MError, ObjLnk, Path

WAIT = 5.0  # generous bound for every wait; a healthy run needs milliseconds


def initial_values() -> dict[Path, Any]:
    return {
        Path(1, 0, 0): 1,
        Path(1, 0, 1): 60,
        Path(1, 0, 7): "U",
        Path(3, 0, 0): "FITA test",
        Path(3, 0, 17): "embServe Node",
        Path(3, 0, 21): 256,
        Path(3, 0, 11, 0): 0,
        Path(3303, 0, 5700): 21.5,
        Path(3303, 0, 5701): "Cel",
        Path(35003, 0, 27400): ObjLnk(3, 0),
    }


class LwM2MTestClient(PathCapable, Resource, ObservableResource):
    """A tiny LwM2M 1.1 client on its own aiocoap context (one UDP socket)."""

    EXECUTABLE = {(3, 4), (9, 4), (9, 10)}  # (object, resource) pairs that can be executed

    def __init__(self, endpoint: str, lifetime: int = 60):
        super().__init__()
        self.endpoint = endpoint
        self.lifetime = lifetime
        self.values = initial_values()
        self.empty_objects = {9}  # announced without instances, creatable
        self.executed: list[tuple[Path, bytes]] = []
        self.attributes: dict[Path, dict[str, str]] = {}
        self.block1_numbers: list[int] = []
        self.answer_format: int | None = None  # force a content format for reads (e.g. 1542)
        self.silent = False  # drop every device-management request unanswered
        self.observable = True
        self._observers: dict[Path, set[Any]] = {}
        self.context: aiocoap.Context | None = None
        self.location: tuple[str, ...] = ()
        self.server: str = ""

    # --------------------------------------------------------------- lifetime

    async def __aenter__(self) -> "LwM2MTestClient":
        self.context = await aiocoap.Context.create_server_context(self, bind=("127.0.0.1", 0), transports=["udp6"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.context.shutdown()

    # --------------------------------------------------------------- registration interface (client side)

    def object_links(self) -> str:
        objects: dict[int, set[int]] = {obj: set() for obj in self.empty_objects}
        for p in self.values:
            objects.setdefault(p.obj, set()).add(p.inst)
        return registration_links({o: sorted(i) for o, i in objects.items()})

    async def _post(self, uri: str, payload: bytes = b"", code: Code = Code.POST) -> Message:
        msg = Message(code=code, uri=uri, payload=payload)
        if payload:
            msg.opt.content_format = codecs.LINK
        return await asyncio.wait_for(self.context.request(msg).response, WAIT)

    async def register(self, server: str, query: str | None = None, payload: bytes | None = None) -> Message:
        self.server = server
        query = query if query is not None else f"ep={self.endpoint}&lt={self.lifetime}&lwm2m=1.1&b=U"
        payload = payload if payload is not None else self.object_links().encode()
        response = await self._post(f"{server}/rd?{query}", payload)
        if response.code == Code.CREATED:
            self.location = tuple(response.opt.location_path)
        return response

    async def update(self, query: str = "", links: bool = False) -> Message:
        uri = f"{self.server}/{'/'.join(self.location)}" + (f"?{query}" if query else "")
        return await self._post(uri, self.object_links().encode() if links else b"")

    async def deregister(self) -> Message:
        return await self._post(f"{self.server}/{'/'.join(self.location)}", code=Code.DELETE)

    # --------------------------------------------------------------- device side

    def set_value(self, path: Path, value: Any) -> None:
        self.values[path] = value
        for observed, observers in self._observers.items():
            if observed.contains(path):
                for obs in list(observers):
                    obs.trigger()

    def _below(self, path: Path) -> dict[Path, Any]:
        return {p: v for p, v in self.values.items() if path.contains(p)}

    async def render_to_pipe(self, pipe: Any) -> None:
        if self.silent:
            return
        if pipe.request.opt.block1 is not None:
            self.block1_numbers.append(pipe.request.opt.block1.block_number)
        await super().render_to_pipe(pipe)

    async def add_observation(self, request: Message, serverobservation: Any) -> None:
        if not self.observable:
            return  # not accepting: aiocoap answers like a plain read, without Observe
        path = Path.parse("/" + "/".join(request.opt.uri_path))
        observers = self._observers.setdefault(path, set())
        observers.add(serverobservation)
        serverobservation.accept(lambda: observers.discard(serverobservation))

    def notify(self, path: Path, message: Message) -> None:
        """Send ``message`` as the next notification to every observer of ``path``."""
        for obs in list(self._observers.get(path, ())):
            obs.trigger(message)

    def observer_count(self, path: Path) -> int:
        return len(self._observers.get(path, ()))

    async def render(self, request: Message) -> Message:
        try:
            path = Path.parse("/" + "/".join(request.opt.uri_path))
        except LwM2MError as exc:
            return Message(code=Code.NOT_FOUND, payload=str(exc).encode())
        handler = {
            Code.GET: self._get,
            Code.PUT: self._put,
            Code.POST: self._post_device,
            Code.DELETE: self._delete,
        }.get(request.code)
        if handler is None:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        try:
            return handler(request, path)
        except LwM2MError as exc:
            return Message(code=Code.BAD_REQUEST, payload=str(exc).encode())

    def _get(self, request: Message, path: Path) -> Message:
        below = self._below(path)
        if not below and not (path.depth == 1 and path.obj in self.empty_objects):
            return Message(code=Code.NOT_FOUND, payload=f"nothing at {path}".encode())
        if request.opt.accept == codecs.LINK:
            links = [Link(str(path))] + [Link(str(Path(*p[:3]))) for p in sorted(below) if p[:3] != tuple(path)[:3]]
            attrs = self.attributes.get(path)
            if attrs:
                links[0].attrs.update(attrs)
            return Message(code=Code.CONTENT, payload=format_links(links).encode(), content_format=codecs.LINK)
        fmt = int(request.opt.accept) if request.opt.accept is not None else codecs.TLV
        payload = codecs.encode(below, path, codecs.TLV if fmt == codecs.TLV_OLD else fmt)
        answer_format = self.answer_format if self.answer_format is not None else fmt
        return Message(code=Code.CONTENT, payload=payload, content_format=answer_format)

    def _put(self, request: Message, path: Path) -> Message:
        if not request.payload:  # Write-Attributes
            self.attributes[path] = dict(q.split("=", 1) for q in request.opt.uri_query)
            return Message(code=Code.CHANGED)
        content = codecs.decode(request.payload, path, request.opt.content_format and int(request.opt.content_format))
        if path.res is None:
            for p in list(self._below(path)):
                del self.values[p]
        for p, v in content.items():
            self.set_value(p, v)
        return Message(code=Code.CHANGED)

    def _post_device(self, request: Message, path: Path) -> Message:
        if path.depth == 1:  # Create
            content = codecs.decode(request.payload, path, codecs.TLV) if request.payload else {}
            # an empty Object Instance TLV names the instance without any resource
            inst = next((t.id for t in tlv.split(request.payload) if t.kind is tlv.Kind.OBJECT_INSTANCE), None)
            if inst is None:
                inst = max([p.inst for p in self.values if p.obj == path.obj] + [-1]) + 1
            if self._below(Path(path.obj, inst)):
                return Message(code=Code.BAD_REQUEST, payload=f"/{path.obj}/{inst} exists".encode())
            self.values.update(content)
            self.values.setdefault(Path(path.obj, inst, 0), "")
            return Message(code=Code.CREATED, location_path=(str(path.obj), str(inst)))
        if path.depth == 3:  # Execute
            if (path.obj, path.res) not in self.EXECUTABLE:
                return Message(code=Code.METHOD_NOT_ALLOWED, payload=f"{path} is not executable".encode())
            self.executed.append((path, request.payload))
            return Message(code=Code.CHANGED)
        content = codecs.decode(request.payload, path, request.opt.content_format and int(request.opt.content_format))
        self.values.update(content)  # Partial Update
        return Message(code=Code.CHANGED)

    def _delete(self, request: Message, path: Path) -> Message:
        below = self._below(path)
        if path.depth != 2 or not below:
            return Message(code=Code.NOT_FOUND, payload=f"no instance at {path}".encode())
        for p in below:
            del self.values[p]
        return Message(code=Code.DELETED)


@pytest.fixture
async def gateway():
    async with Gateway(expiry_grace=0.2, request_timeout=WAIT) as gw:
        yield gw


@pytest.fixture
async def device(gateway):
    async with LwM2MTestClient("node1") as client:
        async with gateway.subscribe() as events:
            response = await client.register(gateway.uri)
            assert response.code == Code.CREATED, response.payload
            event = await events.get(WAIT)
            assert (event.kind, event.endpoint) == ("registered", "node1")
        yield client


# ------------------------------------------------------------------ registration interface


async def test_register_records_the_client(gateway: Gateway):
    async with LwM2MTestClient("node1", lifetime=45) as client:
        response = await client.register(gateway.uri)
        assert response.code == Code.CREATED
        reg = await gateway.wait_for_registration("node1", timeout=WAIT)
        assert client.location == ("rd", reg.registration_id)
        assert reg.lifetime == 45
        assert reg.lwm2m_version == "1.1"
        assert reg.binding == "U"
        assert reg.address == ("127.0.0.1", client.context.request_interfaces[0].token_interface.message_interface._local_port())
        assert reg.available_instances == {1: [0], 3: [0], 9: [], 3303: [0], 35003: [0]}
        assert reg.object_paths == ["/1/0", "/3/0", "/9", "/3303/0", "/35003/0"]
        assert reg.registered_at == reg.updated_at
        assert gateway.registrations["node1"] is reg
        assert gateway.uri == f"coap://127.0.0.1:{gateway.port}" and gateway.port > 0


async def test_update_and_deregister_raise_events(gateway: Gateway, device: LwM2MTestClient):
    before = gateway.registrations["node1"]
    async with gateway.subscribe() as events:
        device.empty_objects.add(3300)
        response = await device.update("lt=120&b=UQ", links=True)
        assert response.code == Code.CHANGED
        updated = await events.get(WAIT)
        assert updated.kind == "updated"
        assert updated.registration.registration_id == before.registration_id
        assert updated.registration.lifetime == 120
        assert updated.registration.binding == "UQ" and updated.registration.queue_mode
        assert 3300 in updated.registration.available_instances
        assert updated.registration.registered_at == before.registered_at

        response = await device.deregister()
        assert response.code == Code.DELETED
        gone = await events.get(WAIT)
        assert (gone.kind, gone.endpoint) == ("deregistered", "node1")
    assert "node1" not in gateway.registrations
    response = await device.update()
    assert response.code == Code.NOT_FOUND
    assert b"unknown" in response.payload


async def test_registration_without_update_expires(gateway: Gateway):
    async with LwM2MTestClient("short-lived", lifetime=1) as client, gateway.subscribe() as events:
        await client.register(gateway.uri)
        assert (await events.get(WAIT)).kind == "registered"
        expired = await events.get(WAIT)
        assert (expired.kind, expired.endpoint) == ("expired", "short-lived")
        assert "lifetime of 1 s" in expired.reason
        assert "short-lived" not in gateway.registrations
        assert (await client.update()).code == Code.NOT_FOUND


async def test_reregistration_replaces_the_old_one(gateway: Gateway, device: LwM2MTestClient):
    old = gateway.registrations["node1"]
    async with gateway.subscribe() as events:
        await device.register(gateway.uri)
        dropped, added = await events.get(WAIT), await events.get(WAIT)
    assert (dropped.kind, dropped.registration.registration_id) == ("deregistered", old.registration_id)
    assert "replaced" in dropped.reason
    assert added.kind == "registered" and added.registration.registration_id != old.registration_id
    assert gateway.registrations["node1"] is added.registration
    assert device.location == ("rd", added.registration.registration_id)


async def test_listener_hears_every_event(gateway: Gateway):
    heard: list[tuple[str, str]] = []
    remove = gateway.add_listener(lambda e: heard.append((e.kind, e.endpoint)))
    async with LwM2MTestClient("n2") as client, gateway.subscribe() as events:
        await client.register(gateway.uri)
        await events.get(WAIT)
        await client.deregister()
        await events.get(WAIT)
    remove()
    assert heard == [("registered", "n2"), ("deregistered", "n2")]


@pytest.mark.parametrize(
    ("query", "payload", "code", "reason"),
    [
        ("lt=60", b"</1/0>", Code.BAD_REQUEST, b"endpoint name"),
        ("ep=x&lt=zero", b"</1/0>", Code.BAD_REQUEST, b"lt='zero'"),
        ("ep=x&lwm2m=2.x", b"</1/0>", Code.BAD_REQUEST, b"lwm2m='2.x'"),
        ("ep=x&b=Z", b"</1/0>", Code.BAD_REQUEST, b"binding"),
        ("ep=x", b"</1/0", Code.BAD_REQUEST, b"bad link format"),
        ("ep=x", b"garbage", Code.BAD_REQUEST, b"bad link format"),
        ("ep=x", b"</x/y>", Code.BAD_REQUEST, b"numeric ids"),
        ("ep=x", b"", Code.BAD_REQUEST, b"object links"),
    ],
)
async def test_bad_registration_is_refused_and_a_good_one_still_works(
    gateway: Gateway, query: str, payload: bytes, code: Code, reason: bytes
):
    async with LwM2MTestClient("good") as client:
        response = await client.register(gateway.uri, query=query, payload=payload)
        assert response.code == code
        assert reason in response.payload
        assert not gateway.registrations
        assert (await client.register(gateway.uri)).code == Code.CREATED
        reg = await gateway.wait_for_registration("good", timeout=WAIT)
        assert await gateway.read("good", "/3/0/17") == {Path(3, 0, 17): "embServe Node"}
        assert reg.endpoint == "good"


async def test_registration_interface_rejects_wrong_methods_and_paths(gateway: Gateway):
    async with LwM2MTestClient("c") as client:
        get_rd = await client._post(f"{gateway.uri}/rd", code=Code.GET)
        assert get_rd.code == Code.METHOD_NOT_ALLOWED
        assert (await client._post(f"{gateway.uri}/rd/nope", code=Code.PUT)).code == Code.METHOD_NOT_ALLOWED
        assert (await client._post(f"{gateway.uri}/rd/nope", code=Code.DELETE)).code == Code.NOT_FOUND
        assert (await client._post(f"{gateway.uri}/bs?ep=c", b"</1/0>")).code == Code.NOT_FOUND
        text_links = Message(code=Code.POST, uri=f"{gateway.uri}/rd?ep=c", payload=b"</1/0>", content_format=0)
        answer = await asyncio.wait_for(client.context.request(text_links).response, WAIT)
        assert answer.code == Code.UNSUPPORTED_CONTENT_FORMAT


async def test_register_without_content_format_and_with_alternate_root(gateway: Gateway):
    async with LwM2MTestClient("alt") as client:
        msg = Message(code=Code.POST, uri=f"{gateway.uri}/rd?ep=alt&lt=30", payload=b'</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>')
        response = await asyncio.wait_for(client.context.request(msg).response, WAIT)
        assert response.code == Code.CREATED
        reg = gateway.registrations["alt"]
        assert reg.root_path == "/lwm2m"
        assert reg.lwm2m_version == "1.0" and reg.binding == "U"
        assert reg.available_instances == {3: [0]}
        # requests carry the alternate root; this client only serves "/", so it refuses the path
        with pytest.raises(GatewayRequestError) as err:
            await gateway.read("alt", "/3/0/0")
        assert err.value.code == "4.04 Not Found"


async def test_garbage_datagram_does_not_disturb_the_server(gateway: Gateway):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\xff\x00not coap at all", ("127.0.0.1", gateway.port))
        sock.sendto(b"", ("127.0.0.1", gateway.port))
    async with LwM2MTestClient("after-garbage") as client:
        assert (await client.register(gateway.uri)).code == Code.CREATED
        assert await gateway.read("after-garbage", "/3/0/0") == {Path(3, 0, 0): "FITA test"}


async def test_wait_for_registration_timeout_names_registered_endpoints(gateway: Gateway, device: LwM2MTestClient):
    with pytest.raises(GatewayTimeout) as err:
        await gateway.wait_for_registration("absent", timeout=0.05)
    assert "'absent'" in str(err.value) and "'node1'" in str(err.value)


# ------------------------------------------------------------------ device management


async def test_read_instance_and_resource(gateway: Gateway, device: LwM2MTestClient):
    content = await gateway.read("node1", "/3/0")
    assert content[Path(3, 0, 17)] == "embServe Node"
    assert content[Path(3, 0, 21)] == 256
    assert content[Path(3, 0, 11, 0)] == 0
    assert await gateway.read("node1", "/3303/0/5700") == {Path(3303, 0, 5700): 21.5}
    assert (await gateway.read("node1", "/35003/0/27400"))[Path(35003, 0, 27400)] == ObjLnk(3, 0)


async def test_read_in_text_senml_and_legacy_tlv(gateway: Gateway, device: LwM2MTestClient):
    assert await gateway.read("node1", "/3/0/17", fmt="text") == {Path(3, 0, 17): "embServe Node"}
    senml = await gateway.read("node1", "/3303/0", fmt="senml")
    assert senml[Path(3303, 0, 5700)] == 21.5 and senml[Path(3303, 0, 5701)] == "Cel"
    device.answer_format = codecs.TLV_OLD
    assert (await gateway.read("node1", "/3/0"))[Path(3, 0, 0)] == "FITA test"
    raw = await gateway.read_raw("node1", "/3/0/0")
    assert raw.content_format == codecs.TLV_OLD and raw.code == "2.05 Content" and raw.code_number == 69


async def test_undecodable_answer_names_the_format(gateway: Gateway, device: LwM2MTestClient):
    device.answer_format = 11543  # says LwM2M JSON, which the codecs do not speak
    with pytest.raises(GatewayDecodeError) as err:
        await gateway.read("node1", "/3/0/0")
    assert "11543" in str(err.value) and "node1" in str(err.value)


async def test_write_single_values_and_instances(gateway: Gateway, device: LwM2MTestClient):
    await gateway.write("node1", "/1/0/1", 300)
    assert device.values[Path(1, 0, 1)] == 300
    await gateway.write("node1", "/3/0/0", "text write", fmt="text")
    assert device.values[Path(3, 0, 0)] == "text write"
    await gateway.write("node1", "/3303/0", {"/3303/0/5701": "K"}, replace=False)
    assert device.values[Path(3303, 0, 5701)] == "K" and Path(3303, 0, 5700) in device.values
    await gateway.write("node1", "/3303/0", {Path(3303, 0, 5700): 1.5})
    assert device._below(Path(3303, 0)) == {Path(3303, 0, 5700): 1.5}


async def test_large_opaque_write_goes_out_with_block1(gateway: Gateway, device: LwM2MTestClient):
    package = bytes(range(256)) * 12  # 3 kB, like a service.json
    path = await gateway.create("node1", "/9", instance_id=1000)
    await gateway.write("node1", path.child(2), package)
    assert device.values[Path(9, 1000, 2)] == package
    assert device.block1_numbers[:3] == [0, 1, 2]  # octet-stream (an opaque resource, nothing announced): 3 blocks


async def test_execute_create_delete(gateway: Gateway, device: LwM2MTestClient):
    created = await gateway.create("node1", "/9", {Path(9, 1000, 0): "temperature_sensor"})
    assert created == Path(9, 1000)
    assert device.values[Path(9, 1000, 0)] == "temperature_sensor"
    picked = await gateway.create("node1", "/9")
    assert picked == Path(9, 1001)
    await gateway.execute("node1", "/9/1000/4")
    await gateway.execute("node1", "/9/1000/10", "arg=1")
    assert device.executed == [(Path(9, 1000, 4), b""), (Path(9, 1000, 10), b"arg=1")]
    await gateway.delete("node1", "/9/1000")
    assert not device._below(Path(9, 1000))
    with pytest.raises(GatewayRequestError) as err:
        await gateway.delete("node1", "/9/1000")
    assert err.value.code == "4.04 Not Found" and err.value.code_number == 132
    assert "no instance at /9/1000" in str(err.value) and "node1" in str(err.value)


async def test_device_errors_carry_code_and_diagnostic(gateway: Gateway, device: LwM2MTestClient):
    with pytest.raises(GatewayRequestError) as err:
        await gateway.execute("node1", "/3303/0/5700")
    assert err.value.code == "4.05 Method Not Allowed"
    assert err.value.endpoint == "node1" and err.value.path == "/3303/0/5700"
    assert "is not executable" in err.value.diagnostic
    with pytest.raises(GatewayRequestError, match="4.04 Not Found: nothing at /5/0"):
        await gateway.read("node1", "/5/0")


async def test_discover_and_write_attributes(gateway: Gateway, device: LwM2MTestClient):
    await gateway.write_attributes("node1", "/3303/0/5700", pmin=1, pmax=30, st=0.5)
    assert device.attributes[Path(3303, 0, 5700)] == {"pmin": "1", "pmax": "30", "st": "0.5"}
    links = await gateway.discover("node1", "/3303/0/5700")
    assert links[0].path == "/3303/0/5700" and links[0].attrs["pmax"] == "30"
    links = await gateway.discover("node1", "/3/0")
    assert [link.path for link in links][:3] == ["/3/0", "/3/0/0", "/3/0/11"]
    with pytest.raises(ValueError, match="at least one"):
        await gateway.write_attributes("node1", "/3/0")


async def test_observe_delivers_every_notification(gateway: Gateway, device: LwM2MTestClient):
    async with gateway.observe("node1", "/3303/0/5700") as obs:
        first = await obs.next(WAIT)
        assert first.value() == 21.5 and first.endpoint == "node1" and first.timestamp > 0
        assert device.observer_count(Path(3303, 0, 5700)) == 1
        for value in (22.0, 22.5, 23.0):
            device.set_value(Path(3303, 0, 5700), value)
            note = await obs.next(WAIT)
            assert note.value() == value
            assert note.sequence is not None and note.sequence > first.sequence
        assert obs.received == 4
    assert not obs.active
    with pytest.raises(StopAsyncIteration):
        await obs.__anext__()
    device.set_value(Path(3303, 0, 5700), 30.0)  # answered with Reset: the device drops the observation
    await wait_until(lambda: device.observer_count(Path(3303, 0, 5700)) == 0, "the device to drop the cancelled observation", WAIT)


async def test_error_notification_ends_the_observation_with_its_code(gateway: Gateway, device: LwM2MTestClient):
    async with gateway.observe("node1", "/3303/0/5700") as obs:
        await obs.next(WAIT)
        device.notify(Path(3303, 0, 5700), Message(code=Code.NOT_FOUND, payload=b"instance deleted"))
        with pytest.raises(GatewayRequestError) as err:
            await obs.next(WAIT)
        assert err.value.code == "4.04 Not Found" and err.value.diagnostic == "instance deleted"
        assert not obs.active
        assert [n async for n in obs] == []


async def test_observe_refused_or_failing_raises(gateway: Gateway, device: LwM2MTestClient):
    with pytest.raises(GatewayRequestError, match="observe /3303/7/5700 failed with 4.04 Not Found"):
        await gateway.observe("node1", "/3303/7/5700")
    device.observable = False
    with pytest.raises(ObservationRefused, match="without an Observe option"):
        async with gateway.observe("node1", "/3303/0/5700"):
            pass
    assert not gateway._observations


async def test_blockwise_notification_is_completed_by_a_read(gateway: Gateway, device: LwM2MTestClient):
    await gateway.create("node1", "/9", instance_id=1000)
    async with gateway.observe("node1", "/9/1000") as obs:
        await obs.next(WAIT)
        package = bytes(range(256)) * 12
        device.values[Path(9, 1000, 2)] = package
        whole = codecs.encode(device._below(Path(9, 1000)), Path(9, 1000), codecs.TLV)
        first_block = Message(code=Code.CONTENT, payload=whole[:1024], content_format=codecs.TLV, block2=(0, True, 6))
        device.notify(Path(9, 1000), first_block)
        note = await obs.next(WAIT)
        assert note.content[Path(9, 1000, 2)] == package


async def test_observation_ends_with_the_registration(gateway: Gateway, device: LwM2MTestClient):
    obs = await gateway.observe("node1", "/3303/0")
    assert (await obs.next(WAIT)).content[Path(3303, 0, 5701)] == "Cel"
    await device.deregister()
    seen = [note async for note in obs]
    assert seen == []
    assert "deregistered" in obs.ended


async def test_unknown_endpoint_names_registered_ones(gateway: Gateway, device: LwM2MTestClient):
    with pytest.raises(UnknownEndpoint) as err:
        await gateway.read("ghost", "/3/0")
    assert "'ghost'" in str(err.value) and "'node1'" in str(err.value)


async def test_request_timeout_names_endpoint_path_and_timeout(gateway: Gateway, device: LwM2MTestClient):
    device.silent = True
    with pytest.raises(GatewayTimeout) as err:
        await gateway.read("node1", "/3/0/0", timeout=0.3)
    message = str(err.value)
    assert "node1" in message and "/3/0/0" in message and "0.3 s" in message
    device.silent = False
    assert await gateway.read("node1", "/3/0/0") == {Path(3, 0, 0): "FITA test"}


async def test_bad_arguments_are_refused_before_sending(gateway: Gateway, device: LwM2MTestClient):
    with pytest.raises(ValueError, match="resource path"):
        await gateway.write("node1", "/3/0", "x")
    with pytest.raises(ValueError, match="resource path"):
        await gateway.execute("node1", "/9/1000")
    with pytest.raises(ValueError, match="object path"):
        await gateway.create("node1", "/9/1000")
    with pytest.raises(ValueError, match="unknown content format 'xml'"):
        await gateway.read("node1", "/3/0", fmt="xml")
    with pytest.raises(LwM2MError, match="bad LwM2M path"):
        await gateway.read("node1", "/three")


async def test_gateway_closes_observations_and_subscriptions():
    async with LwM2MTestClient("n") as client:
        async with Gateway() as gw:
            events = gw.subscribe()
            await client.register(gw.uri)
            await events.get(WAIT)
            obs = await gw.observe("n", "/3303/0/5700")
        assert not obs.active and "closed" in obs.ended
        assert [e async for e in events] == []


def test_event_record_is_json(tmp_path):
    from hil.commands.gateway import event_record
    from hil.gateway.registry import Registration, RegistrationEvent

    reg = Registration("ep", "abc", ("127.0.0.1", 5000), 60, "1.1", "U", [Link("/3/0")], 1.0, 1.0)
    line = json.dumps(event_record(RegistrationEvent("registered", reg)))
    assert json.loads(line) == {
        "event": "registered",
        "endpoint": "ep",
        "registration_id": "abc",
        "address": "127.0.0.1:5000",
        "lifetime": 60,
        "lwm2m": "1.1",
        "binding": "U",
        "objects": ["/3/0"],
    }
