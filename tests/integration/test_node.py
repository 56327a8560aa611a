"""The simulated node against the project's gateway (hil.gateway) over real UDP on loopback."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import wait_until

from hil.device.clock import VirtualClock
from hil.device.node import Node
from hil.device.objects import ObjectHandler
from hil.gateway import Gateway, GatewayRequestError, RegistrationEvent
from hil.lwm2m import codecs
from hil.lwm2m.model import Path

WAIT = 10.0  # bound for every wait; a healthy run needs milliseconds


@pytest.fixture
async def gateway():
    async with Gateway(expiry_grace=0.3) as gw:
        yield gw


@pytest.fixture
async def node(gateway):
    """node1, registered to the gateway through the shell bootstrap command."""
    async with Node("node1", sensors={"temperature": 21.5, "humidity": 40}) as n:
        n.console.write_input(f"embserve connector lwm2m server_add {gateway.uri} node1\n")
        await gateway.wait_for_registration("node1", timeout=WAIT)
        yield n


async def next_event(events, kind: str, endpoint: str) -> RegistrationEvent:
    seen: list[str] = []
    deadline = time.monotonic() + WAIT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind!r} event for {endpoint} within {WAIT} s; saw {seen}")
        event = await events.get(timeout=remaining)
        seen.append(f"{event.kind} {event.endpoint}")
        if event.kind == kind and event.endpoint == endpoint:
            return event


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- registration


async def test_registers_after_the_bootstrap_command_and_not_before(gateway):
    async with gateway.subscribe() as events, Node("node1") as node:
        await node.shell.run_line("embserve version")  # the node is up and serving its shell
        assert gateway.registrations == {} and node.client.registrations == 0 and node.client.state.value == "idle"
        node.console.write_input(f"embserve connector lwm2m server_add {gateway.uri} node1\n")
        event = await next_event(events, "registered", "node1")
        reg = event.registration
        assert reg.address == node.address and reg.lifetime == 300 and reg.lwm2m_version == "1.1" and reg.binding == "U"
        assert reg.object_paths == [
            "/1/0",
            "/3/0",
            "/4/0",
            "/9",
            "/15/0",
            "/3303/0",
            "/35003/0",  # the device's own Software Package Monitoring instance
        ]
        await node.console.wait_for(r"<inf> net_lwm2m_rd_client: Registration Done \(EP='node1'\)", WAIT)
        assert node.registered
    assert "node1" not in gateway.registrations  # de-registered on close


async def test_gateway_reads_the_device_objects(gateway, node):
    device = await gateway.read("node1", "/3/0")
    assert device[Path(3, 0, 17)] == "embServe Node"
    assert device[Path(3, 0, 0)] == "embserve-hil" and device[Path(3, 0, 1)] == "sim"
    assert device[Path(3, 0, 2)] == node.serial and device[Path(3, 0, 3)] == node.firmware_version
    assert device[Path(3, 0, 16)] == "U" and device[Path(3, 0, 21)] in (256, "256")
    assert abs(device[Path(3, 0, 13)] - time.time()) < 60
    assert await gateway.read("node1", "/4/0/4") == {Path(4, 0, 4, 0): "127.0.0.1"}
    caps = await gateway.read("node1", "/15")
    assert caps[Path(15, 0, 0)] == "2;136" and caps[Path(15, 0, 1)] == 0  # one instance lists every sensor
    assert Path(15, 1, 0) not in caps
    server = await gateway.read("node1", "/1/0")
    assert server[Path(1, 0, 1)] == 300 and server[Path(1, 0, 7)] == "U"
    assert await gateway.read("node1", "/3303/0/5701") == {Path(3303, 0, 5701): "Cel"}


async def test_content_formats_of_reads(gateway, node):
    plain = await gateway.read_raw("node1", "/3/0/17", fmt=None)
    assert plain.content_format == codecs.SENML_CBOR  # no Accept: the node's preferred format, single resources too
    assert codecs.decode(plain.payload, Path(3, 0, 17), codecs.SENML_CBOR) == {Path(3, 0, 17): "embServe Node"}
    tlv = await gateway.read_raw("node1", "/3/0/17", fmt="tlv")
    assert codecs.decode(tlv.payload, Path(3, 0, 17), codecs.TLV) == {Path(3, 0, 17): "embServe Node"}
    text = await gateway.read_raw("node1", "/3/0/17", fmt="text")
    assert (text.content_format, text.payload) == (codecs.TEXT, b"embServe Node")
    senml = await gateway.read("node1", "/3303/0", fmt="senml")
    assert senml[Path(3303, 0, 5700)] == 21.5
    links = await gateway.discover("node1", "/3303/0")
    assert [link.path for link in links][:2] == ["/3303/0", "/3303/0/5601"]
    with pytest.raises(GatewayRequestError, match="4.06"):
        await gateway.read("node1", "/3/0", fmt="text")  # text carries one value only
    with pytest.raises(GatewayRequestError, match="4.06"):
        await gateway.read("node1", "/3/0/17", fmt="opaque")


async def test_write_then_read_back(gateway, node):
    await gateway.write("node1", "/3303/0/5750", "greenhouse")
    assert await gateway.read("node1", "/3303/0/5750") == {Path(3303, 0, 5750): "greenhouse"}
    await gateway.write("node1", "/3303/0/5750", "roof", fmt="text")
    await gateway.write("node1", "/3303/0", {Path(3303, 0, 5750): "cellar"}, replace=False, fmt="senml")
    assert node.objects.get("/3303/0/5750") == "cellar"


async def test_lifetime_write_sends_an_update_with_the_new_lifetime(gateway, node):
    async with gateway.subscribe() as events:
        await gateway.write("node1", "/1/0/1", 120)
        event = await next_event(events, "updated", "node1")
    assert event.registration.lifetime == 120 and node.client.lifetime == 120


async def test_service_instance_create_package_upload_and_delete(gateway, node):
    async with gateway.subscribe() as events:
        created = await gateway.create("node1", "/9", instance_id=1000)
        assert created == Path(9, 1000)
        event = await next_event(events, "updated", "node1")
        assert "/9/1000" in event.registration.object_paths  # the node announced the new instance
        package = b'{"name": "temperature_sensor", "service": "' + b"QUJD" * 700 + b'"}'
        assert len(package) > 2700  # more than one CoAP block: goes up with Block1
        await gateway.write("node1", "/9/1000/2", package, fmt="opaque")
        assert node.objects.get("/9/1000/2") == package
        await gateway.write("node1", "/9/1000/2", package[:100])  # as TLV too
        assert node.objects.get("/9/1000/2") == package[:100]
        await gateway.execute("node1", "/9/1000/4")
        await gateway.delete("node1", "/9/1000")
        event = await next_event(events, "updated", "node1")
        if "/9/1000" in event.registration.object_paths:  # the install's own update came first
            event = await next_event(events, "updated", "node1")
        assert "/9" in event.registration.object_paths and "/9/1000" not in event.registration.object_paths
    assert node.objects.instances(9) == []


async def test_create_without_instance_id_gets_a_location(gateway, node):
    created = await gateway.create("node1", "/9")
    assert created == Path(9, 0) and node.objects.get("/9/0/7") == 0  # Update State: initial


async def test_observe_notifies_after_sensor_set_and_ends_when_the_gateway_forgets_it(gateway, node):
    async with gateway.observe("node1", "/3303/0/5700") as observation:
        first = await observation.next(WAIT)
        assert first.value() == 21.5 and len(node.client.site.observations) == 1
        await node.shell.run_line("sensor set temperature 25.5")
        notification = await observation.next(WAIT)
        assert notification.value() == 25.5
    # the gateway cancels passively: the next notification is answered with a Reset
    await node.shell.run_line("sensor set temperature 26")
    await wait_until(lambda: not node.client.site.observations, "the node to drop the observation")


async def test_observe_honours_pmin_and_pmax_on_the_virtual_clock(gateway):
    clock = VirtualClock(realtime=False)
    async with Node("node1", clock=clock) as node:
        await node.connect(gateway.uri)
        await node.wait_registered(WAIT)
        await gateway.write_attributes("node1", "/3303/0/5700", pmin=5, pmax=30)
        async with gateway.observe("node1", "/3303/0/5700") as observation:
            assert (await observation.next(WAIT)).value() == 21.5
            [on_node] = node.client.site.observations
            node.sensors["temperature"].set(22.0)  # at t=0: pmin holds it back until t=5
            await clock.advance(4.9)
            assert on_node.sent == 0
            await clock.advance(0.1)
            assert on_node.sent == 1
            assert (await observation.next(WAIT)).value() == 22.0
            await clock.advance(30)  # nothing changed, but pmax is due
            assert (await observation.next(WAIT)).value() == 22.0


class RecordingServiceHandler(ObjectHandler):
    """Stands where the service runtime plugs in (object 9): records the server's operations."""

    def __init__(self, calls: list[tuple[str, Path, object]]):
        self.calls = calls

    def on_create(self, path):
        self.calls.append(("create", path, None))

    def on_write(self, path, value):
        self.calls.append(("write", path, value))
        self.store.set(Path(path.obj, path.inst, 7), 3)  # Update State: Delivered

    def on_execute(self, path, arg):
        self.calls.append(("execute", path, arg))

    def on_delete(self, path):
        self.calls.append(("delete", path, None))


async def test_boot_hook_plugs_object_handlers_on_every_boot(gateway):
    calls: list[tuple[str, Path, object]] = []
    async with Node("node1") as node:
        node.add_boot_hook(lambda n: n.objects.set_handler(9, RecordingServiceHandler(calls)))
        await node.reboot()  # hooks run from the next boot on
        await node.connect(gateway.uri)
        await node.wait_registered(WAIT)
        await gateway.create("node1", "/9", instance_id=1000)
        await gateway.write("node1", "/9/1000/2", b"{}", fmt="opaque")
        assert (await gateway.read("node1", "/9/1000/7"))[Path(9, 1000, 7)] == 3
        await gateway.execute("node1", "/9/1000/4", "0='fast'")
        await gateway.delete("node1", "/9/1000")
        assert calls == [
            ("create", Path(9, 1000), None),
            ("write", Path(9, 1000, 2), b"{}"),
            ("execute", Path(9, 1000, 4), "0='fast'"),
            ("delete", Path(9, 1000), None),
        ]
        async with gateway.subscribe() as events:
            await node.reboot()
            await next_event(events, "registered", "node1")
        assert isinstance(node.objects.handler(9), RecordingServiceHandler)  # plugged into the new store


# ---------------------------------------------------------------------- reboot, expiry, recovery


async def test_kernel_reboot_deregisters_and_registers_again(gateway, node):
    first = gateway.registration("node1")
    async with gateway.subscribe() as events:
        node.console.write_input("kernel reboot\n")
        await next_event(events, "deregistered", "node1")
        again = (await next_event(events, "registered", "node1")).registration
    assert again.registration_id != first.registration_id and again.address == node.address
    assert node.boots == 2
    await node.console.wait_for(r"^\*\*\* Booting Zephyr OS build", WAIT)
    assert (await gateway.read("node1", "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"


async def test_reboot_through_lwm2m_execute(gateway, node):
    async with gateway.subscribe() as events:
        await gateway.execute("node1", "/3/0/4")
        await next_event(events, "deregistered", "node1")
        await next_event(events, "registered", "node1")
    assert node.boots == 2


async def test_silent_node_registration_expires(gateway):
    frozen = VirtualClock(realtime=False)  # never advanced: the node never sends its Update
    async with (
        gateway.subscribe() as events,
        Node("quiet", clock=frozen, lifetime=1) as node,
    ):
        await node.connect(gateway.uri)
        await next_event(events, "registered", "quiet")
        expired = await next_event(events, "expired", "quiet")
        assert expired.registration.lifetime == 1
        assert "quiet" not in gateway.registrations


async def test_updates_keep_a_short_registration_alive(gateway):
    async with gateway.subscribe() as events, Node("busy", lifetime=1) as node:
        await node.connect(gateway.uri)
        first = (await next_event(events, "registered", "busy")).registration
        await next_event(events, "updated", "busy")
        second = (await next_event(events, "updated", "busy")).registration
        assert second.registration_id == first.registration_id  # the same registration, kept alive
        assert second.updated_at > first.registered_at + first.lifetime  # beyond the first lifetime
        assert gateway.registration("busy").registration_id == first.registration_id


async def test_update_answered_404_leads_to_a_new_registration(gateway, node):
    async with gateway.subscribe() as events:
        gateway.registry.deregister(gateway.registration("node1").registration_id)  # the server forgets the node
        node.client.trigger_update()
        await next_event(events, "registered", "node1")
    await node.console.wait_for("Update failed: the server does not know the registration", WAIT)


async def test_absent_server_is_retried_with_backoff_until_it_comes(tmp_path):
    port = free_udp_port()
    clock = VirtualClock(realtime=False)
    async with Node("late", clock=clock, request_timeout=1.0) as node:
        await node.connect(f"coap://127.0.0.1:{port}")
        await node.console.wait_for(r"<wrn> .*Registration failed: .*Connection refused.*retrying in 1 s", WAIT)
        assert node.client.state.value == "backoff"
        async with Gateway(port=port) as gw:
            await clock.advance(1.0)
            await node.wait_registered(WAIT)
            assert "late" in gw.registrations


# ---------------------------------------------------------------------- bad requests


BAD_REQUESTS = [
    ("GET", "/3/0/999", {}, "4.04"),
    ("GET", "/77", {}, "4.04"),
    ("GET", "/3/3", {}, "4.04"),
    (
        "PUT",
        "/3/0/17",
        {"payload": b"x", "content_format": "text"},
        "4.05",
    ),  # read-only
    ("POST", "/3/0/17", {}, "4.05"),  # execute on a non-executable resource
    ("GET", "/3/0/4", {}, "4.05"),  # read an executable
    ("DELETE", "/3/0", {}, "4.05"),
    (
        "POST",
        "/3",
        {"payload": b"", "content_format": "tlv"},
        "4.05",
    ),  # create on the fixed device object
    ("FETCH", "/3/0", {}, "4.05"),
    (
        "PUT",
        "/3303/0",
        {"payload": b"\xc8\x00\x09", "content_format": "tlv"},
        "4.00",
    ),  # truncated TLV
    (
        "PUT",
        "/3303/0/5750",
        {"payload": b"\xff\xfe", "content_format": "text"},
        "4.00",
    ),  # not UTF-8
    (
        "PUT",
        "/1/0/1",
        {"payload": b"soon", "content_format": "text"},
        "4.00",
    ),  # not an integer
    (
        "PUT",
        "/3303/0/5750",
        {"payload": b"{}", "content_format": 50},
        "4.15",
    ),  # application/json
    ("GET", "/3/0", {"accept": 60}, "4.06"),  # CBOR
    (
        "PUT",
        "/3/0/17",
        {"query": ["pmin=abc"]},
        "4.00",
    ),  # write-attributes with a bad value
]


async def test_bad_requests_get_their_codes_and_the_node_keeps_serving(gateway, node):
    for method, path, options, code in BAD_REQUESTS:
        with pytest.raises(GatewayRequestError) as info:
            await gateway.request("node1", method, path, **options)
        assert code in str(info.value), f"{method} {path}: {info.value}"
    assert (await gateway.read("node1", "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
    assert node.registered
