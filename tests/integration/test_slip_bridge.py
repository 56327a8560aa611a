"""The SLIP bridge end to end: a test device on one end of a line, real UDP servers on loopback.

The test device is :class:`hil.net.endpoint.SlipEndpoint`: a small IPv4/UDP
host written in Python that puts on the line exactly the bytes a board's
firmware would. The far ends are real: a UDP echo server, and the project's
LwM2M :class:`~hil.gateway.Gateway`. Lines are socketpairs, a pty pair, and a
pty driven through pyserial.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import tty
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from typing import Any

import pytest
import serial
from aiocoap import ACK, CON, Message
from aiocoap.numbers.codes import Code

from hil.gateway import Gateway
from hil.lwm2m.model import Path
from hil.net import icmp
from hil.net.bridge import SlipBridge
from hil.net.endpoint import SlipEndpoint
from hil.net.ipv4 import PROTO_ICMP, build_ipv4, build_udp, internet_checksum, parse_udp
from hil.net.links import (
    SerialLink,
    StreamLink,
    open_fd_link,
    open_serial_link,
    open_tcp_link,
)
from hil.net.slip import slip_encode

DEVICE_IP = "10.0.2.15"
GATEWAY_IP = "10.0.2.2"
WAIT = 5.0  # bound of every wait; a healthy run needs milliseconds


class UdpEchoServer(asyncio.DatagramProtocol):
    """A UDP echo server on loopback; ``grow:N`` is answered with N bytes instead."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.peers.append(addr[:2])
        assert self.transport is not None
        if data.startswith(b"grow:"):
            data = b"g" * int(data[5:])
        self.transport.sendto(data, addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]


@pytest.fixture
async def echo() -> AsyncIterator[UdpEchoServer]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(UdpEchoServer, local_addr=("127.0.0.1", 0))
    try:
        yield server
    finally:
        transport.close()


async def socketpair_links() -> tuple[StreamLink, StreamLink]:
    bridge_side, device_side = socket.socketpair()
    bridge_link = StreamLink(*await asyncio.open_connection(sock=bridge_side), name="socketpair")
    device_link = StreamLink(*await asyncio.open_connection(sock=device_side), name="test-device")
    return bridge_link, device_link


@contextlib.asynccontextmanager
async def bridged(far_end: tuple[str, int], **options: Any) -> AsyncIterator[tuple[SlipBridge, SlipEndpoint]]:
    """A bridge to ``far_end`` and a test device on the other end of a socketpair line."""
    bridge_link, device_link = await socketpair_links()
    options.setdefault("log_interval", None)
    async with (
        SlipBridge(bridge_link, gateway=far_end, **options) as bridge,
        SlipEndpoint(device_link, DEVICE_IP) as device,
    ):
        yield bridge, device
    assert not device.rejected, f"the bridge sent packets that do not parse: {device.rejected}"


# ---------------------------------------------------------------------- relaying


async def test_udp_round_trip_through_the_bridge(echo: UdpEchoServer) -> None:
    async with bridged(echo.address) as (bridge, device):
        await device.send_udp(40001, GATEWAY_IP, 5683, b"hello over SLIP")
        packet, reply = await device.receive_udp(WAIT)
        assert reply.payload == b"hello over SLIP"
        # the answer comes from the address the device wrote to, back to the port it wrote from
        assert (reply.src, reply.src_port, reply.dst, reply.dst_port) == (
            IPv4Address(GATEWAY_IP), 5683, IPv4Address(DEVICE_IP), 40001
        )
        assert packet.ttl == 64 and packet.dont_fragment

        await device.send_udp(40001, GATEWAY_IP, 5683, b"again")
        second, _ = await device.receive_udp(WAIT)
        assert second.identification != packet.identification

        (flow,) = bridge.flows
        assert echo.peers == [flow.local, flow.local]  # one host socket carries the flow
        assert flow.target == echo.address and (flow.to_target, flow.to_device) == (2, 2)
        stats = await bridge.wait_for(lambda s: s.frames_out == 2, "both answers on the line")
        assert (stats.frames_in, stats.datagrams_to_gateway, stats.datagrams_to_device) == (2, 2, 2)
        assert (stats.flows, stats.flows_opened, stats.dropped) == (1, 1, 0)
        assert stats.bytes_in == len(slip_encode(build_udp(DEVICE_IP, 1, GATEWAY_IP, 2, b"hello over SLIP"))) + len(
            slip_encode(build_udp(DEVICE_IP, 1, GATEWAY_IP, 2, b"again"))
        )


async def test_each_device_flow_gets_its_own_host_socket(echo: UdpEchoServer) -> None:
    async with bridged(echo.address) as (bridge, device):
        for port in (41000, 42000, 41000):
            await device.send_udp(port, GATEWAY_IP, 5683, f"from {port}".encode())
            _, reply = await device.receive_udp(WAIT)
            assert (reply.dst_port, reply.payload) == (port, f"from {port}".encode())
        assert len(set(echo.peers)) == 2 and echo.peers[0] == echo.peers[2]
        assert {f.device[1]: f.local for f in bridge.flows} == {41000: echo.peers[0], 42000: echo.peers[1]}
        assert (bridge.stats.flows, bridge.stats.flows_opened) == (2, 2)


async def test_routes_and_a_fixed_gateway_port(echo: UdpEchoServer) -> None:
    async with bridged(
        echo.address,
        device_gateway_ip="192.0.2.1",
        device_gateway_port=5683,
        routes={("192.0.2.1", 7): echo.address},
    ) as (bridge, device):
        await device.send_udp(40000, "192.0.2.1", 5683, b"to the gateway")
        await device.send_udp(40000, "192.0.2.1", 7, b"to the echo route")
        answers = {(await device.receive_udp(WAIT))[1].payload for _ in range(2)}
        assert answers == {b"to the gateway", b"to the echo route"}
        await device.send_udp(40000, "192.0.2.1", 9, b"no service on port 9")
        await device.send_udp(40000, GATEWAY_IP, 5683, b"the default gateway address is not this one")
        await device.send_udp(40000, "198.51.100.7", 53, b"elsewhere is not reachable")
        await bridge.wait_for(lambda s: s.dropped_by_reason.get("no_route") == 3, "three unroutable datagrams")
        assert bridge.stats.datagrams_to_gateway == 2


# ---------------------------------------------------------------------- what is dropped


async def test_bad_frames_are_counted_and_dropped_while_good_traffic_continues(echo: UdpEchoServer) -> None:
    good = build_udp(DEVICE_IP, 40000, GATEWAY_IP, 5683, b"good")
    bad_ip_checksum = bytearray(good)
    bad_ip_checksum[10] ^= 0x5A
    bad_udp_checksum = bytearray(good)
    bad_udp_checksum[-1] ^= 0x01
    fragment = bytearray(good)
    fragment[6:8] = b"\x20\x00"  # MF set
    fragment[10:12] = b"\x00\x00"
    fragment[10:12] = internet_checksum(bytes(fragment[:20])).to_bytes(2, "big")
    tcp = build_ipv4(DEVICE_IP, GATEWAY_IP, 6, bytes(20))
    ipv6 = b"\x60" + bytes(39)
    icmp_elsewhere = icmp.echo_request(DEVICE_IP, "10.0.2.3", 1, 1)
    bad_frames = [
        bytes(bad_ip_checksum),
        good[:30],  # truncated
        bytes(fragment),
        tcp,
        ipv6,
        bytes(bad_udp_checksum),
        icmp_elsewhere,
        b"\x45",  # a lone byte of a header
    ]
    async with bridged(echo.address) as (bridge, device):
        await device.send_raw(b"line noise before any frame")
        for frame in bad_frames:
            await device.send_packet(frame)
        await device.send_raw(b"\xc0broken\xdb\x01escape\xc0")
        await device.send_packet(good)
        _, reply = await device.receive_udp(WAIT)
        assert reply.payload == b"good"
        stats = await bridge.wait_for(lambda s: s.dropped == 9, "nine dropped frames")
        assert stats.dropped_by_reason == {
            "bad_ip_checksum": 1,
            "truncated": 2,
            "fragment": 1,
            "tcp": 1,
            "not_ipv4": 1,
            "bad_udp_checksum": 1,
            "icmp": 1,
            "bad_escape": 1,
        }
        assert stats.noise_bytes == len(b"line noise before any frame") + len(b"broken\xdb\x01escape")
        assert stats.frames_in == len(bad_frames) + 1  # the broken escape never became a frame
        assert (stats.datagrams_to_gateway, echo.peers) == (1, [bridge.flows[0].local])


async def test_frames_over_the_mtu_are_dropped_both_ways(echo: UdpEchoServer) -> None:
    async with bridged(echo.address, mtu=576) as (bridge, device):
        await device.send_udp(40000, GATEWAY_IP, 5683, bytes(576 - 28 + 1))  # one byte too many
        await device.send_udp(40000, GATEWAY_IP, 5683, b"grow:549")  # answer one byte too big
        await device.send_udp(40000, GATEWAY_IP, 5683, bytes(576 - 28))  # exactly the MTU
        _, reply = await device.receive_udp(WAIT)
        assert len(reply.payload) == 576 - 28
        await device.send_udp(40000, GATEWAY_IP, 5683, b"grow:548")
        _, reply = await device.receive_udp(WAIT)
        assert reply.payload == b"g" * 548
        stats = await bridge.wait_for(lambda s: s.dropped == 2, "two datagrams over the MTU")
        assert stats.dropped_by_reason == {"oversize": 1, "reply_over_mtu": 1}


async def test_a_device_must_send_from_its_own_address(echo: UdpEchoServer) -> None:
    async with bridged(echo.address, device_ip=DEVICE_IP) as (bridge, device):
        await device.send_packet(build_udp("10.0.2.99", 40000, GATEWAY_IP, 5683, b"spoofed"))
        await device.send_udp(40000, GATEWAY_IP, 5683, b"genuine")
        _, reply = await device.receive_udp(WAIT)
        assert reply.payload == b"genuine"
        assert bridge.stats.dropped_by_reason == {"wrong_source": 1}


async def test_a_silent_target_is_counted_as_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()
    # the port is closed now: loopback answers with ICMP port unreachable
    async with bridged(nobody) as (bridge, device):
        for n in range(2):  # Linux reports the error on the socket's next operation
            await device.send_udp(40000, GATEWAY_IP, 5683, b"anyone there? %d" % n)
        await bridge.wait_for(lambda s: "target_unreachable" in s.dropped_by_reason, "an unreachable report")
        assert bridge.stats.datagrams_to_device == 0


async def test_random_line_garbage_never_stops_the_bridge(echo: UdpEchoServer) -> None:
    rng = random.Random(8)
    async with bridged(echo.address, mtu=576) as (bridge, device):
        template = build_udp(DEVICE_IP, 40000, GATEWAY_IP, 5683, b"template payload")
        for _ in range(300):
            kind = rng.randrange(3)
            if kind == 0:  # random bytes, ENDs and ESCs included
                await device.send_raw(bytes(rng.choice((0xC0, 0xDB, rng.randrange(256))) for _ in range(rng.randrange(1, 80))))
            elif kind == 1:  # a real packet with a few bits flipped
                corrupt = bytearray(template)
                for _ in range(rng.randrange(1, 4)):
                    corrupt[rng.randrange(len(corrupt))] ^= 1 << rng.randrange(8)
                await device.send_packet(bytes(corrupt))
            else:  # a random IPv4-looking frame
                await device.send_packet(b"\x45" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 700))))
        await device.send_raw(b"\xc0")  # close whatever the garbage left open
        await device.send_udp(40123, GATEWAY_IP, 5683, b"still alive?")
        while True:  # two bit flips can cancel out in a checksum: skip echoes of such packets
            packet = await device.receive(WAIT)
            reply = parse_udp(packet)
            if reply.dst_port == 40123:
                break
        assert reply.payload == b"still alive?"
        assert bridge.stats.dropped > 100 and "internal_error" not in bridge.stats.dropped_by_reason


# ---------------------------------------------------------------------- ping


async def test_the_gateway_address_answers_ping(echo: UdpEchoServer) -> None:
    async with bridged(echo.address) as (bridge, device):
        await device.send_packet(icmp.echo_request(DEVICE_IP, GATEWAY_IP, 0x4242, 3, b"abcdefgh"))
        reply = await device.receive(WAIT)
        assert (reply.protocol, reply.src, reply.dst) == (PROTO_ICMP, IPv4Address(GATEWAY_IP), IPv4Address(DEVICE_IP))
        assert reply.payload[0] == icmp.ECHO_REPLY and reply.payload[4:] == bytes.fromhex("42420003") + b"abcdefgh"
        assert bridge.stats.echo_replies == 1 and bridge.stats.flows == 0


async def test_ping_can_be_turned_off(echo: UdpEchoServer) -> None:
    async with bridged(echo.address, answer_ping=False) as (bridge, device):
        await device.send_packet(icmp.echo_request(DEVICE_IP, GATEWAY_IP, 1, 1))
        await bridge.wait_for(lambda s: s.dropped_by_reason.get("icmp") == 1, "the echo request dropped")
        assert bridge.stats.echo_replies == 0 and bridge.stats.frames_out == 0


# ---------------------------------------------------------------------- the line's lifetime


async def test_the_bridge_notices_the_device_hanging_up(echo: UdpEchoServer) -> None:
    bridge_link, device_link = await socketpair_links()
    async with SlipBridge(bridge_link, gateway=echo.address, log_interval=None) as bridge:
        assert not bridge.link_closed
        await device_link.close()
        await bridge.wait_link_closed(WAIT)
        assert bridge.link_closed and bridge.link_error is None


async def test_waits_time_out_with_what_was_seen(echo: UdpEchoServer) -> None:
    async with bridged(echo.address) as (bridge, _device):
        with pytest.raises(TimeoutError, match=r"waiting for a frame that never comes; SLIP bridge: frames in 0"):
            await bridge.wait_for(lambda s: s.frames_in > 0, "a frame that never comes", timeout=0.05)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mtu": 40}, "mtu=40"),
        ({"ttl": 0}, "ttl=0"),
        ({"device_gateway_ip": "10.0.2"}, "device_gateway_ip='10.0.2' is not an IPv4 address"),
        ({"routes": {("10.0.2.2", 7): ("127.0.0.1", 0)}}, "route for 10.0.2.2:7"),
        ({"routes": {"10.0.2.2": ("127.0.0.1", 7)}}, r"routes key='10.0.2.2': expected a \(host, port\) pair"),
        ({"device_gateway_port": 0}, "device_gateway_port=0"),
        ({"gateway": "127.0.0.1:5683"}, r"gateway='127.0.0.1:5683': expected a \(host, port\) pair"),
    ],
)
async def test_bad_bridge_settings_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    bridge_link, device_link = await socketpair_links()
    options.setdefault("gateway", ("127.0.0.1", 5683))
    try:
        with pytest.raises(ValueError, match=message):
            SlipBridge(bridge_link, **options)
    finally:
        await bridge_link.close()
        await device_link.close()


def test_a_line_must_be_something_that_carries_bytes() -> None:
    with pytest.raises(TypeError, match="cannot carry SLIP over str"):
        SlipBridge("/dev/ttyUSB1", gateway=("127.0.0.1", 5683))


# ---------------------------------------------------------------------- other lines


@contextlib.contextmanager
def raw_pty() -> Any:
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no CR/LF rewriting: SLIP bytes pass as they are
    try:
        yield master, slave
    finally:
        os.close(master)
        with contextlib.suppress(OSError):
            os.close(slave)


async def test_bridge_over_a_pty(echo: UdpEchoServer) -> None:
    with raw_pty() as (master, slave):
        async with (
            SlipBridge(await open_fd_link(master, "pty"), gateway=echo.address, log_interval=None) as bridge,
            SlipEndpoint(await open_fd_link(slave, "pty-device"), DEVICE_IP) as device,
        ):
            payload = bytes(range(256))  # every byte value, END and ESC among them
            await device.send_udp(40000, GATEWAY_IP, 5683, payload)
            _, reply = await device.receive_udp(WAIT)
            assert reply.payload == payload
            assert bridge.stats.dropped == 0 and not device.rejected


async def test_bridge_over_a_pyserial_port(echo: UdpEchoServer) -> None:
    with raw_pty() as (master, slave):
        port = serial.Serial(os.ttyname(slave), baudrate=115200, timeout=SerialLink.POLL)
        async with SlipBridge(port, gateway=echo.address, log_interval=None) as bridge:
            assert isinstance(bridge.link, SerialLink)
            async with SlipEndpoint(await open_fd_link(master, "pty-device"), DEVICE_IP) as device:
                for n in range(3):
                    await device.send_udp(40000 + n, GATEWAY_IP, 5683, b"\xc0\xdb serial %d" % n)
                    _, reply = await device.receive_udp(WAIT)
                    assert reply.payload == b"\xc0\xdb serial %d" % n
                assert bridge.stats.flows == 3 and bridge.stats.dropped == 0
        assert not port.is_open  # the bridge closed the port it was given


async def test_bridge_connects_to_a_tcp_line_like_qemus_socket_chardev(echo: UdpEchoServer) -> None:
    # the test device listens, as QEMU does with -chardev socket,server=on for UART1
    connected: asyncio.Queue[StreamLink] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.put_nowait(StreamLink(reader, writer, name="uart1"))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        async with SlipBridge(await open_tcp_link(host, port), gateway=echo.address, log_interval=None) as bridge:
            device_link = await asyncio.wait_for(connected.get(), WAIT)
            async with SlipEndpoint(device_link, DEVICE_IP) as device:
                await device.send_udp(40000, GATEWAY_IP, 5683, b"over TCP")
                _, reply = await device.receive_udp(WAIT)
                assert reply.payload == b"over TCP"
                assert bridge.link.name == f"tcp:{host}:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_unreachable_lines_are_reported_by_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"could not connect to the SLIP link at 127.0.0.1:{port}"):
        await open_tcp_link("127.0.0.1", port, timeout=WAIT)
    with pytest.raises(ConnectionError, match="could not open serial port '/nonexistent/ttySLIP' for SLIP"):
        open_serial_link("/nonexistent/ttySLIP")


# ---------------------------------------------------------------------- the project's gateway


class LwM2MOverSlip:
    """The CoAP side of the test device: registers, and answers one Read."""

    def __init__(self, device: SlipEndpoint, port: int = 56830):
        self.device = device
        self.port = port

    async def send(self, message: Message) -> None:
        await self.device.send_udp(self.port, GATEWAY_IP, 5683, message.encode())

    async def receive(self) -> Message:
        _, datagram = await self.device.receive_udp(WAIT)
        assert datagram.dst_port == self.port
        return Message.decode(datagram.payload)


async def test_lwm2m_registration_and_read_through_the_bridge_to_the_gateway() -> None:
    async with (
        Gateway(request_timeout=WAIT) as gateway,
        bridged(("127.0.0.1", gateway.port), device_gateway_port=5683) as (bridge, device),
    ):
        node = LwM2MOverSlip(device)
        register = Message(
            code=Code.POST, uri_path=("rd",), uri_query=("ep=slip-node", "lt=60", "lwm2m=1.1", "b=U"),
            payload=b"</1/0>,</3/0>",
        )
        register.opt.content_format = 40  # application/link-format
        register.mtype, register.mid, register.token = CON, 0x1001, b"\x5e\x01"
        await node.send(register)

        created = await node.receive()
        assert (created.code, created.mtype, created.mid, created.token) == (Code.CREATED, ACK, 0x1001, b"\x5e\x01")
        assert created.opt.location_path[0] == "rd"
        registration = await gateway.wait_for_registration("slip-node", WAIT)
        (flow,) = bridge.flows
        assert registration.address[1] == flow.local[1]  # the gateway sees the flow's host socket

        # device management goes the other way: the gateway asks, the device answers over the line
        read = asyncio.create_task(gateway.read("slip-node", "/3/0/0", fmt="text"))
        try:
            request = await node.receive()
            assert (request.code, request.mtype, request.opt.uri_path) == (Code.GET, CON, ("3", "0", "0"))
            answer = Message(code=Code.CONTENT, payload=b"SLIP test node")
            answer.opt.content_format = 0
            answer.mtype, answer.mid, answer.token = ACK, request.mid, request.token
            await node.send(answer)
            content = await asyncio.wait_for(read, WAIT)
        finally:
            read.cancel()
        assert content == {Path(3, 0, 0): "SLIP test node"}
        assert bridge.stats.dropped == 0 and bridge.stats.datagrams_to_device == 2
