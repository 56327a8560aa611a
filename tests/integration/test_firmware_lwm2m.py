"""The reference firmware's CoAP/LwM2M client under QEMU, against the project's gateway.

Each test boots ``embserve.elf`` on QEMU ``mps2-an385`` with user networking;
the node is bootstrapped from its shell (``embserve connector lwm2m
server_add coap://10.0.2.2:PORT EP``) and registers to a :class:`Gateway`
listening on the host loopback. Raw datagrams for the robustness checks go to
the address the node registered from: slirp's NAT socket for the node's flow,
which forwards anything it receives to the guest's CoAP port.

The firmware is built once per session into a private directory (qemu_helpers),
so the tests never race another build of ``firmware/build``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from conftest import FITA_SERVICE, REPO
from conftest import firmware_elf as build_firmware
from qemu_helpers import FirmwareNode as Node
from qemu_helpers import booted, install, node_console, register, sdk_service, server_add

from hil.gateway.server import Gateway, GatewayRequestError
from hil.lwm2m import tlv
from hil.lwm2m.model import ObjLnk, Path

PROJECT_SERVICE = REPO / "services" / "temperature_sensor"
CRASH_SERVICE = REPO / "tests" / "integration" / "firmware_services" / "crash_store"
ENDPOINT = "node1"

pytestmark = pytest.mark.emulation

# CoAP response codes as numbers (class << 5 | detail)
BAD_REQUEST, NOT_FOUND, METHOD_NOT_ALLOWED, NOT_ACCEPTABLE = 128, 132, 133, 134
TOO_LARGE, UNSUPPORTED_FORMAT = 141, 143
SENML_JSON = 110


@pytest.fixture(scope="module")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    return build_firmware(tmp_path_factory)  # once per session; skips without the tools


def booted_node(elf: FsPath, log_dir: FsPath) -> contextlib.AbstractAsyncContextManager[Node]:
    """QEMU running the firmware, its console attached, up to the first prompt."""
    return booted(elf, log_dir, node_console(ENDPOINT, log_dir))


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(host="127.0.0.1", port=0) as gw:
        yield gw


@pytest.fixture
async def node(firmware_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> AsyncIterator[Node]:
    """A booted node registered to ``gateway`` as ENDPOINT."""
    async with booted_node(firmware_elf, tmp_path) as n:
        await register(n.shell, gateway, ENDPOINT)
        yield n


async def expect_code(code_number: int, request) -> GatewayRequestError:
    with pytest.raises(GatewayRequestError) as info:
        await request
    assert info.value.code_number == code_number, f"expected code {code_number}, got {info.value}"
    return info.value


# --------------------------------------------------------------------------- registration


async def test_node_registers_with_its_objects(node: Node, gateway: Gateway) -> None:
    reg = gateway.registration(ENDPOINT)
    assert reg.lwm2m_version == "1.1"
    assert reg.binding == "U"
    assert reg.lifetime == 300
    assert reg.object_paths == ["/1/0", "/3/0", "/4/0", "/9", "/15/0", "/3303/0", "/35003/0"]
    root = [link for link in reg.object_links if link.path == "/"]
    assert root and root[0].attrs == {"rt": "oma.lwm2m", "ct": "11542"}
    await node.console.expect("Registration Done (EP='node1')", timeout=5)


async def test_registration_is_retried_until_the_gateway_answers(firmware_elf: FsPath, tmp_path: FsPath) -> None:
    # a free port nobody listens on yet: the first Register goes unanswered
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with booted_node(firmware_elf, tmp_path) as n:
        await server_add(n.shell, ENDPOINT, port)
        await asyncio.sleep(0.5)  # let the first transmission be lost
        async with Gateway(host="127.0.0.1", port=port) as gw:
            # the CoAP retransmission (2-3 s after the first try) reaches it
            reg = await gw.wait_for_registration(ENDPOINT, timeout=15)
            assert reg.endpoint == ENDPOINT


async def test_lifetime_write_drives_updates_and_a_forgotten_registration_registers_again(
    node: Node, gateway: Gateway
) -> None:
    first = gateway.registration(ENDPOINT)
    async with gateway.subscribe() as events:
        await gateway.write(ENDPOINT, "/1/0/1", 2, fmt="text")
        event = await events.get(timeout=5)
        assert (event.kind, event.registration.lifetime) == ("updated", 2)
        assert (await gateway.read(ENDPOINT, "/1/0/1"))[Path(1, 0, 1)] == 2
        # the gateway forgets the node: its next periodic Update (within 1 s) gets 4.04
        gateway.registry.deregister(first.registration_id)
        while True:
            event = await events.get(timeout=10)
            if event.kind == "registered":
                break
        assert event.registration.registration_id != first.registration_id
        assert event.registration.lifetime == 2


async def test_execute_registration_update_trigger_sends_an_update(node: Node, gateway: Gateway) -> None:
    async with gateway.subscribe() as events:
        await gateway.execute(ENDPOINT, "/1/0/8")
        event = await events.get(timeout=5)
        assert event.kind == "updated"
        assert event.registration.endpoint == ENDPOINT


async def test_reboot_deregisters_before_reset(node: Node, gateway: Gateway) -> None:
    async with gateway.subscribe() as events:
        await node.console.send_line("kernel reboot")
        event = await events.get(timeout=5)
        assert event.kind == "deregistered"
        assert event.endpoint == ENDPOINT
    # -no-reboot: the guest's reset request ends QEMU
    assert await node.qemu.wait_exit(timeout=5) == 0
    assert ENDPOINT not in gateway.registrations


async def test_reboot_execute_answers_then_deregisters(node: Node, gateway: Gateway) -> None:
    async with gateway.subscribe() as events:
        await gateway.execute(ENDPOINT, "/3/0/4")  # answered before the node goes down
        event = await events.get(timeout=5)
        assert (event.kind, event.endpoint) == ("deregistered", ENDPOINT)
    assert await node.qemu.wait_exit(timeout=5) == 0


# --------------------------------------------------------------------------- reads, writes, discover


async def test_read_device_object(node: Node, gateway: Gateway) -> None:
    device = await gateway.read(ENDPOINT, "/3/0")
    assert device[Path(3, 0, 17)] == "embServe Node"
    assert device[Path(3, 0, 1)] == "mps2-an385"
    assert device[Path(3, 0, 16)] == "U"
    assert device[Path(3, 0, 21)] == 4096
    assert device[Path(3, 0, 11, 0)] == 0
    assert Path(3, 0, 4) not in device  # executable: not part of a read

    text = await gateway.read_raw(ENDPOINT, "/3/0/17", fmt="text")
    assert (text.content_format, text.payload) == (0, b"embServe Node")
    memory = await gateway.read_raw(ENDPOINT, "/3/0/21", fmt="text")
    assert memory.payload == b"4096"


async def test_read_connectivity_capabilities_and_monitoring(node: Node, gateway: Gateway) -> None:
    assert (await gateway.read(ENDPOINT, "/4/0/4"))[Path(4, 0, 4, 0)] == "10.0.2.15"
    caps = await gateway.read(ENDPOINT, "/15/0")
    assert (caps[Path(15, 0, 0)], caps[Path(15, 0, 1)]) == ("2", 0)
    monitor = await gateway.read(ENDPOINT, "/35003/0")
    assert monitor[Path(35003, 0, 27400)] == ObjLnk(3, 0)
    assert all(isinstance(monitor[Path(35003, 0, r)], str) for r in (27401, 27402, 27403, 27404))


async def test_discover_lists_instances_and_resources(node: Node, gateway: Gateway) -> None:
    links = {link.path: link.attrs for link in await gateway.discover(ENDPOINT, "/3")}
    assert "/3" in links and "/3/0" in links and "/3/0/17" in links
    assert links["/3/0/11"] == {"dim": "1"}
    await gateway.write_attributes(ENDPOINT, "/3303/0/5700", pmin=1, pmax=60)
    links = {link.path: link.attrs for link in await gateway.discover(ENDPOINT, "/3303/0")}
    assert links["/3303/0/5700"] == {"pmin": "1", "pmax": "60"}


async def test_writes_in_tlv_and_text(node: Node, gateway: Gateway) -> None:
    await gateway.write(ENDPOINT, "/3/0/13", 1700000000)  # TLV, Time
    assert (await gateway.read(ENDPOINT, "/3/0/13"))[Path(3, 0, 13)] >= 1700000000
    await gateway.write(ENDPOINT, "/1/0", {Path(1, 0, 2): 1, Path(1, 0, 3): 120}, replace=False)  # instance, partial
    server = await gateway.read(ENDPOINT, "/1/0")
    assert (server[Path(1, 0, 2)], server[Path(1, 0, 3)]) == (1, 120)
    await gateway.request(ENDPOINT, "PUT", "/1/0/6", b"1", content_format="text")
    assert (await gateway.read(ENDPOINT, "/1/0/6"))[Path(1, 0, 6)] is True


async def test_error_codes(node: Node, gateway: Gateway) -> None:
    ep = ENDPOINT
    await expect_code(NOT_FOUND, gateway.read(ep, "/5/0"))
    await expect_code(NOT_FOUND, gateway.read(ep, "/3/1"))
    await expect_code(NOT_FOUND, gateway.read(ep, "/3/0/99"))
    await expect_code(NOT_FOUND, gateway.read(ep, "/9/1000"))
    await expect_code(METHOD_NOT_ALLOWED, gateway.read(ep, "/3/0/4"))
    await expect_code(NOT_ACCEPTABLE, gateway.read(ep, "/3/0", fmt=SENML_JSON))
    await expect_code(NOT_ACCEPTABLE, gateway.read(ep, "/3/0", fmt="text"))
    await expect_code(METHOD_NOT_ALLOWED, gateway.delete(ep, "/3/0"))
    await expect_code(METHOD_NOT_ALLOWED, gateway.create(ep, "/3"))
    await expect_code(METHOD_NOT_ALLOWED, gateway.execute(ep, "/3/0/0"))
    await expect_code(METHOD_NOT_ALLOWED, gateway.write(ep, "/3/0/0", "other"))
    await expect_code(NOT_FOUND, gateway.execute(ep, "/9/1000/4"))
    await expect_code(
        UNSUPPORTED_FORMAT, gateway.request(ep, "PUT", "/1/0/1", b'[{"n":"/1/0/1","v":5}]', content_format=SENML_JSON)
    )
    # a 3-byte integer is not a valid TLV integer
    bad_int = tlv.frame(tlv.Kind.RESOURCE, 1, b"\x00\x01\x02")
    error = await expect_code(BAD_REQUEST, gateway.request(ep, "PUT", "/1/0/1", bad_int, content_format="tlv"))
    assert "/1/0/1" in error.diagnostic
    await expect_code(BAD_REQUEST, gateway.request(ep, "PUT", "/1/0/1", b"many", content_format="text"))
    # nothing changed on the way
    assert (await gateway.read(ep, "/1/0/1"))[Path(1, 0, 1)] == 300


# --------------------------------------------------------------------------- observe


async def test_observe_temperature_follows_sensor_set(node: Node, gateway: Gateway) -> None:
    async with gateway.observe(ENDPOINT, "/3303/0/5700") as obs:
        first = await asyncio.wait_for(anext(obs), 5)
        await node.shell.exec("sensor set temperature 30.25")
        changed = await asyncio.wait_for(anext(obs), 5)
        assert changed.value() == 30.25
        assert changed.sequence is not None and first.sequence is not None and changed.sequence > first.sequence
        await node.shell.exec("sensor set temperature -4.5")
        assert (await asyncio.wait_for(anext(obs), 5)).value() == -4.5
    extremes = await gateway.read(ENDPOINT, "/3303/0")
    assert extremes[Path(3303, 0, 5601)] == -4.5
    assert extremes[Path(3303, 0, 5602)] == 30.25


async def test_departed_observers_and_cancel_cycles_never_lock_observe_out(node: Node, gateway: Gateway) -> None:
    # Observers that leave without a word (a raw peer that never answers again), more than the 8 slots ...
    peer = RawPeer(gateway.registration(ENDPOINT).address)
    try:
        for i in range(12):
            request = coap_message(0x300 + i, 1, [(6, b""), (11, b"3"), (11, b"0"), (11, b"1")], token=bytes([0x30, i]))
            answer = await peer.exchange(request)
            assert answer is not None and answer[1] == 0x45 and answer[6] >> 4 == 6, answer  # 2.05 with Observe (option 6)
    finally:
        peer.close()
    # ... and the gateway's own observe/cancel cycles on a value that never changes
    for _ in range(12):
        async with gateway.observe(ENDPOINT, "/3/0/1") as obs:  # ObservationRefused when no slot is left
            assert (await asyncio.wait_for(anext(obs), 5)).value() == "mps2-an385"


# --------------------------------------------------------------------------- software management


@pytest.fixture(params=["fita-opaque", "sdk-tlv"])
def temperature_package(request: pytest.FixtureRequest, tmp_path: FsPath) -> tuple[bytes, str | None]:
    """(service.json bytes, write format): FITA's real service as opaque, the project's own as TLV."""
    if request.param == "fita-opaque":
        if not FITA_SERVICE.is_file():
            pytest.skip(f"FITA artifacts not available at {FITA_SERVICE}")
        return FITA_SERVICE.read_bytes(), "opaque"
    return sdk_service(PROJECT_SERVICE, tmp_path / "service-build"), None


async def test_deploy_temperature_service_and_readings_arrive(
    node: Node, gateway: Gateway, temperature_package: tuple[bytes, str | None]
) -> None:
    package, fmt = temperature_package
    assert len(package) > 1024  # the write needs Block1
    ep = ENDPOINT
    await node.shell.exec("sensor set temperature 23.5")
    async with gateway.subscribe() as events:
        assert await gateway.create(ep, "/9", instance_id=1000) == Path(9, 1000)
        event = await events.get(timeout=5)
        assert event.kind == "updated" and "/9/1000" in event.registration.object_paths
        assert "/35003/1" in event.registration.object_paths

        await gateway.write(ep, "/9/1000/2", package, fmt=fmt, timeout=20)
        sw = await gateway.read(ep, "/9/1000")
        assert (sw[Path(9, 1000, 7)], sw[Path(9, 1000, 9)]) == (3, 3)  # DELIVERED, downloaded and verified

        await gateway.execute(ep, "/9/1000/4")
        sw = await gateway.read(ep, "/9/1000")
        assert sw[Path(9, 1000, 0)] == "temperature_sensor"
        assert sw[Path(9, 1000, 1)] == "1"
        assert (sw[Path(9, 1000, 7)], sw[Path(9, 1000, 9)], sw[Path(9, 1000, 12)]) == (4, 2, False)

        async with gateway.observe(ep, "/3303/0/5700") as readings:
            await asyncio.wait_for(anext(readings), 5)  # the current value
            await gateway.execute(ep, "/9/1000/10")
            reading = await asyncio.wait_for(anext(readings), 5)  # the service's first output
            assert reading.value() == 23.5
        await node.console.expect("[temperature_sensor]", timeout=5)
        assert (await gateway.read(ep, "/9/1000/12"))[Path(9, 1000, 12)] is True

        monitors = await gateway.read(ep, "/35003")
        by_link = {monitors[k]: k.inst for k in monitors if k.res == 27400}
        assert set(by_link) == {ObjLnk(3, 0), ObjLnk(9, 1000)}
        inst = by_link[ObjLnk(9, 1000)]
        assert int(monitors[Path(35003, inst, 27402)]) > 0  # the module's RAM
        assert monitors[Path(35003, inst, 27404)] == ""

        async with gateway.observe(ep, "/9/1000/7") as state:
            assert (await state.next(5)).value() == 4
            await gateway.delete(ep, "/9/1000")
            # the observation ends with a final 4.04 notification
            await expect_code(NOT_FOUND, state.next(5))
        while "/9/1000" in (event := await events.get(timeout=5)).registration.object_paths:
            pass
        assert "/9" in event.registration.object_paths and "/35003/1" not in event.registration.object_paths
    await expect_code(NOT_FOUND, gateway.read(ep, "/9/1000"))


async def test_each_service_mapping_gets_its_own_temperature_instance(node: Node, gateway: Gateway) -> None:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA artifacts not available at {FITA_SERVICE}")
    ep = ENDPOINT
    package = FITA_SERVICE.read_bytes()
    async with gateway.subscribe() as events:
        for sw in (1000, 1001):
            await install(gateway, ep, sw, package, write_timeout=20)
        # the first service feeds the board's /3303/0, the second gets a new instance
        while "/3303/1" not in (await events.get(timeout=5)).registration.object_paths:
            pass
        async with gateway.observe(ep, "/3303/1/5700") as second:
            await asyncio.wait_for(anext(second), 5)
            await node.shell.exec("sensor set temperature 19.75")
            await gateway.execute(ep, "/9/1001/10")
            assert (await asyncio.wait_for(anext(second), 5)).value() == 19.75
        await gateway.delete(ep, "/9/1001")
        while "/3303/1" in (event := await events.get(timeout=5)).registration.object_paths:
            pass
        assert "/3303/0" in event.registration.object_paths
    await expect_code(NOT_FOUND, gateway.read(ep, "/3303/1"))


async def test_package_larger_than_the_node_accepts_gets_413(node: Node, gateway: Gateway) -> None:
    await gateway.create(ENDPOINT, "/9", instance_id=7)
    error = await expect_code(TOO_LARGE, gateway.write(ENDPOINT, "/9/7/2", os.urandom(20 * 1024), fmt="opaque", timeout=20))
    assert "8192" in error.diagnostic
    assert (await gateway.read(ENDPOINT, "/9/7/7"))[Path(9, 7, 7)] == 0  # still INITIAL
    assert (await gateway.read(ENDPOINT, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"


async def test_bad_package_install_reports_an_error_result(node: Node, gateway: Gateway) -> None:
    ep = ENDPOINT
    created = await gateway.create(ep, "/9")  # the node picks the id
    assert created.obj == 9 and created.inst is not None
    sw = f"/9/{created.inst}"
    await expect_code(METHOD_NOT_ALLOWED, gateway.execute(ep, f"{sw}/4"))  # nothing delivered yet
    await gateway.write(ep, f"{sw}/2", b'{"name": "broken", "version": 1, "service": "bm90IGEgbW9kdWxl"}', fmt="opaque")
    await gateway.execute(ep, f"{sw}/4")
    state = await gateway.read(ep, sw)
    assert state[Path(9, created.inst, 9)] in (54, 57, 58)
    assert state[Path(9, created.inst, 7)] == 3  # still only delivered
    await expect_code(METHOD_NOT_ALLOWED, gateway.execute(ep, f"{sw}/10"))
    monitors = await gateway.read(ep, "/35003")
    errors = [monitors[Path(35003, k.inst, 27404)] for k in monitors if monitors[k] == ObjLnk(9, created.inst)]
    assert errors and errors[0], f"no 35003 error for {sw}: {monitors}"
    # uninstall returns the instance to INITIAL
    await gateway.execute(ep, f"{sw}/6")
    assert (await gateway.read(ep, f"{sw}/7"))[Path(9, created.inst, 7)] == 0


async def test_crashing_service_is_reported_in_update_result_and_35003(
    node: Node, gateway: Gateway, tmp_path: FsPath
) -> None:
    package = sdk_service(CRASH_SERVICE, tmp_path / "crash-build")
    ep = ENDPOINT
    await install(gateway, ep, 1001, package)
    async with gateway.observe(ep, "/9/1001/9") as result:
        assert (await asyncio.wait_for(anext(result), 5)).value() == 2
        await gateway.execute(ep, "/9/1001/10")
        assert (await asyncio.wait_for(anext(result), 10)).value() == 57
    assert (await gateway.read(ep, "/9/1001/12"))[Path(9, 1001, 12)] is False
    monitors = await gateway.read(ep, "/35003/1")
    assert monitors[Path(35003, 1, 27400)] == ObjLnk(9, 1001)
    assert monitors[Path(35003, 1, 27404)] != ""
    assert (await gateway.read(ep, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"


# --------------------------------------------------------------------------- robustness


class RawPeer:
    """A plain UDP socket talking to the node through slirp's NAT socket for its flow."""

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def exchange(self, data: bytes, timeout: float = 2.0) -> bytes | None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, self.address)
        try:
            return await asyncio.wait_for(loop.sock_recv(self.sock, 2048), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()


async def test_malformed_messages_and_unknown_critical_options(node: Node, gateway: Gateway) -> None:
    peer = RawPeer(gateway.registration(ENDPOINT).address)
    try:
        # option delta nibble 15 outside the payload marker: a malformed CON gets a Reset
        assert await peer.exchange(bytes([0x40, 0x01, 0x00, 0x07, 0xF1, 0x00])) == bytes([0x70, 0x00, 0x00, 0x07])
        # version 2: silently ignored
        assert await peer.exchange(bytes([0x80, 0x01, 0x00, 0x08]), timeout=0.5) is None
        # TKL 9: malformed
        assert await peer.exchange(bytes([0x49, 0x01, 0x00, 0x0A]) + bytes(9)) == bytes([0x70, 0x00, 0x00, 0x0A])
        # unknown critical option 25 (after Uri-Path 11: delta 14 = nibble 13 + 1) on a GET /3/0:
        # 4.02 piggybacked on the ACK, token echoed, the option named in the diagnostic
        answer = await peer.exchange(bytes([0x42, 0x01, 0x00, 0x09, 0xAB, 0xCD, 0xB1, ord("3"), 0x01, ord("0"), 0xD1, 0x01, 0x00]))
        assert answer is not None and answer[:6] == bytes([0x62, 0x82, 0x00, 0x09, 0xAB, 0xCD])
        assert b"critical option 25" in answer
        # a CoAP ping
        assert await peer.exchange(bytes([0x40, 0x00, 0x12, 0x34])) == bytes([0x70, 0x00, 0x12, 0x34])
        # a valid GET through the same path still works
        answer = await peer.exchange(
            bytes([0x42, 0x01, 0x00, 0x0B, 0x01, 0x02, 0xB1, ord("3"), 0x01, ord("0"), 0x02, ord("1"), ord("7"), 0x61, 0x00])
        )
        assert answer is not None and answer.endswith(b"\xffembServe Node")
        # a burst of garbage
        loop = asyncio.get_running_loop()
        rng = random.Random(7)
        for i in range(400):
            await loop.sock_sendto(peer.sock, bytes(rng.randrange(256) for _ in range(1 + i % 80)), peer.address)
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # stay under the LAN9118 receive FIFO
    finally:
        peer.close()
    assert (await gateway.read(ENDPOINT, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
    await node.shell.exec("sensor get temperature")  # the shell is alive too


def coap_message(mid: int, code: int, options: list[tuple[int, bytes]], payload: bytes = b"", token: bytes = b"\x5a") -> bytes:
    """A confirmable CoAP message, options encoded in number order (RFC 7252 section 3)."""

    def nibble(value: int) -> tuple[int, bytes]:
        if value < 13:
            return value, b""
        if value < 269:
            return 13, bytes([value - 13])
        return 14, (value - 269).to_bytes(2, "big")

    out = bytearray([0x40 | len(token), code, mid >> 8, mid & 0xFF]) + token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        (dn, dext), (ln, lext) = nibble(number - last), nibble(len(value))
        out += bytes([dn << 4 | ln]) + dext + lext + value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


async def test_random_requests_are_all_answered(node: Node, gateway: Gateway) -> None:
    """Well-framed requests with random methods, paths, formats and bodies: each gets an answer."""
    rng = random.Random(11)
    segments = ["3", "0", "1", "9", "1000", "2", "4", "35003", "3303", "5700", "x", "65536", "99999", "", "007"]
    formats = [None, 0, 40, 42, 110, 1542, 11542, 65000]
    peer = RawPeer(gateway.registration(ENDPOINT).address)
    codes: dict[int, int] = {}
    try:
        for i in range(300):
            path = [rng.choice(segments) for _ in range(rng.randrange(0, 6))]
            method = rng.randrange(1, 5)
            if method == 2 and [p for p in path if p] == ["3", "0", "4"]:
                continue  # Reboot: a valid request the node would honour
            options = [(11, p.encode()) for p in path]
            if (fmt := rng.choice(formats)) is not None:
                options.append((12, fmt.to_bytes(2, "big").lstrip(b"\0")))
            if rng.random() < 0.3:
                options.append((17, rng.choice(formats[1:]).to_bytes(2, "big").lstrip(b"\0")))
            if rng.random() < 0.1:
                options.append((6, b""))  # Observe register
            if rng.random() < 0.1:
                options.append((27, bytes([rng.randrange(256)])))  # a random Block1
            payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 3, 17, 300])))
            answer = await peer.exchange(coap_message(0x5000 + i, method, options, payload))
            assert answer is not None and len(answer) >= 4, f"request {i} ({method} {path}) got no answer"
            assert answer[0] >> 4 in (0x6, 0x7), f"request {i}: not an ACK/RST: {answer!r}"  # v1 ACK or RST
            assert answer[2:4] == (0x5000 + i).to_bytes(2, "big")
            codes[answer[1]] = codes.get(answer[1], 0) + 1
    finally:
        peer.close()
    assert any(code >> 5 == 2 for code in codes) and any(code >> 5 == 4 for code in codes), codes
    assert (await gateway.read(ENDPOINT, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
