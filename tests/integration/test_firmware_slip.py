"""The reference firmware on a SLIP line (UART1) under QEMU, through the real bridge to the real gateway.

QEMU runs without Ethernet (``-nic none``); UART1 is a second socket
chardev, and :class:`hil.net.SlipBridge` carries the node's IPv4/UDP to a
:class:`Gateway` on the host loopback. The node has the firmware's default
SLIP addressing (192.0.2.2/24, peer 192.0.2.1), and the bridge maps the peer
address to the gateway's real address.

Besides the gateway, the bridge routes device-side 192.0.2.1:40000 to a UDP
sink of the test's own, so frames the test writes on the line (next to the
bridge's) to the firmware's UDP echo port come back there: that is how the
line is checked below the LwM2M layer.

The firmware is built once per session, NET=slip and NET=eth, into private
directories (qemu_helpers).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import pytest
from conftest import FITA_SERVICE, REPO, firmware_elf
from qemu_helpers import FirmwareNode, booted, node_console, register

from hil.gateway.server import Gateway
from hil.lwm2m.model import Path
from hil.net import SlipBridge, build_udp, slip_encode
from hil.net.ipv4 import build_ipv4
from hil.targets.base import TargetConfig, TargetError

PROJECT_SERVICE = REPO / "services" / "temperature_sensor"
ENDPOINT = "node1"
DEVICE_IP = "192.0.2.2"
PEER_IP = "192.0.2.1"
SINK_PORT = 40000  # the test's UDP sink, as the device addresses it (at PEER_IP)
ECHO_PORT = 7  # the firmware's UDP echo service
WAIT = 10.0

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def slip_elf(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    return firmware_elf(tmp_path_factory, "slip")


@pytest.fixture(scope="module")
def tiny_ring_elf(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    """NET=slip with a 16-byte UART1 receive ring: the ring fills while a reply is being sent."""
    return firmware_elf(tmp_path_factory, "slip", "EXTRA_CFLAGS=-DUART1_RING_SIZE=16")


@pytest.fixture(scope="module")
def eth_elf(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    return firmware_elf(tmp_path_factory, "eth")


class UdpSink(asyncio.DatagramProtocol):
    """Collects the datagrams the bridge relays to it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(data)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    async def next(self, what: str, timeout: float = WAIT) -> bytes:
        try:
            return await asyncio.wait_for(self.received.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {what} reached the sink within {timeout:g} s") from None


@dataclass
class SlipNode(FirmwareNode):
    bridge: SlipBridge
    sink: UdpSink

    async def inject(self, data: bytes) -> None:
        """Raw bytes on the line to the device, between the bridge's frames (each write is whole)."""
        assert self.qemu.slip_writer is not None
        self.qemu.slip_writer.write(data)
        await self.qemu.slip_writer.drain()

    def echo_request(self, payload: bytes, identification: int = 1) -> bytes:
        """An IPv4/UDP packet from the sink's device-side address to the firmware's echo port."""
        return build_udp(PEER_IP, SINK_PORT, DEVICE_IP, ECHO_PORT, payload, identification=identification)

    async def slip_counters(self) -> dict[str, int]:
        """sl0's counters from ``net iface``."""
        out = "\n".join(await self.shell.exec("net iface"))
        section = out[out.index("Interface sl0"):]
        frames = re.search(r"Frames\s+: rx (\d+), tx (\d+), rx dropped (\d+), tx errors (\d+)", section)
        slip = re.search(r"SLIP\s+: frames in (\d+), out (\d+), bad escape (\d+), oversize (\d+), line pauses (\d+)", section)
        assert frames and slip, f"no sl0 counters in:\n{out}"
        names = ("rx", "tx", "rx_dropped", "tx_errors", "frames_in", "frames_out", "bad_escape", "oversize", "line_pauses")
        return dict(zip(names, map(int, frames.groups() + slip.groups())))


@contextlib.asynccontextmanager
async def slip_node(elf: FsPath, log_dir: FsPath, gateway: Gateway, *, ethernet: bool = False) -> AsyncIterator[SlipNode]:
    """QEMU with UART1 on a socket, past the first prompt, the bridge running on UART1."""
    loop = asyncio.get_running_loop()
    sink_transport, sink = await loop.create_datagram_endpoint(UdpSink, local_addr=("127.0.0.1", 0))
    try:
        async with booted(
            elf, log_dir, node_console(ENDPOINT, log_dir), prompt_timeout=WAIT,
            nic="lan9118" if ethernet else None, slip=True,
        ) as firmware:
            qemu = firmware.qemu
            link = qemu.slip_link("UART1")
            bridge = SlipBridge(
                link,
                gateway=("127.0.0.1", gateway.port),
                device_gateway_ip=PEER_IP,
                device_ip=DEVICE_IP,
                routes={(PEER_IP, SINK_PORT): sink.address},
                log_interval=None,
            )
            async with bridge:
                yield SlipNode(qemu, firmware.console, firmware.shell, bridge, sink)
    finally:
        sink_transport.close()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(host="127.0.0.1", port=0) as gw:
        yield gw


@pytest.fixture
async def node(slip_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> AsyncIterator[SlipNode]:
    """A NET=slip node registered to ``gateway`` through the bridge."""
    async with slip_node(slip_elf, tmp_path, gateway) as n:
        await register(n.shell, gateway, ENDPOINT, host=PEER_IP, timeout=WAIT)
        yield n


# --------------------------------------------------------------------------- interface selection


async def test_slip_build_boots_with_sl0_up_and_the_default_addressing(node: SlipNode) -> None:
    boot = [line.text for line in node.console.history]
    assert f"net: sl0 (SLIP on UART1) up, address {DEVICE_IP} gateway {PEER_IP}" in boot, boot
    out = "\n".join(await node.shell.exec("net iface"))
    sl0, eth0 = out[out.index("Interface sl0"):], out[out.index("Interface eth0"):out.index("Interface sl0")]
    assert "Status    : up" in sl0 and "Status    : down" in eth0, out
    assert re.search(rf"^IPv4 address : {re.escape(DEVICE_IP)}$", sl0, re.MULTILINE), out
    assert re.search(r"^IPv4 netmask : 255\.255\.255\.0$", sl0, re.MULTILINE), out
    assert re.search(rf"^IPv4 gateway : {re.escape(PEER_IP)}$", sl0, re.MULTILINE), out
    assert "Link addr" not in sl0, "a SLIP link has no hardware address"


async def test_net_iface_switches_between_eth_and_slip_keeping_each_address(
    eth_elf: FsPath, gateway: Gateway, tmp_path: FsPath
) -> None:
    async with slip_node(eth_elf, tmp_path, gateway, ethernet=True) as node:
        out = "\n".join(await node.shell.exec("net iface"))
        assert re.search(r"Interface eth0 \(LAN9118\) \[1\]\n=+\nStatus    : up", out), out

        assert await node.shell.exec("net iface slip") == [
            f"sl0 (SLIP on UART1) is up: address {DEVICE_IP} netmask 255.255.255.0 gateway {PEER_IP}"
        ]
        # `net ipv4 set` changes the interface that is up
        assert await node.shell.exec("net ipv4 set 192.0.2.9/24 192.0.2.1") == [
            "sl0: address 192.0.2.9 netmask 255.255.255.0 gateway 192.0.2.1"
        ]
        assert await node.shell.exec("net iface wifi") == ["net iface: unknown interface 'wifi' (expected slip or eth)"]
        assert await node.shell.exec("net iface eth") == [
            "eth0 (LAN9118) is up: address 10.0.2.15 netmask 255.255.255.0 gateway 10.0.2.2"
        ]
        assert await node.shell.exec("net iface sl0") == [
            "sl0 (SLIP on UART1) is up: address 192.0.2.9 netmask 255.255.255.0 gateway 192.0.2.1"
        ]

        # back on Ethernet, slirp carries UDP to the host again
        assert (await node.shell.exec("net iface eth"))[0].startswith("eth0 (LAN9118) is up")
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
            host.bind(("127.0.0.1", 0))
            host.setblocking(False)
            port = host.getsockname()[1]
            await node.shell.exec(f"net udp send 10.0.2.2 {port} over-ethernet")
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(host, 2048), WAIT)  # slirp: up to ~1 s
        assert data == b"over-ethernet"
        assert node.bridge.stats.frames_in == 0, f"nothing should have used the SLIP line: {node.bridge.stats.summary()}"


# --------------------------------------------------------------------------- LwM2M over SLIP


async def test_node_registers_through_the_bridge(node: SlipNode, gateway: Gateway) -> None:
    registration = gateway.registration(ENDPOINT)
    flows = node.bridge.flows
    assert len(flows) == 1, [str(f) for f in flows]
    flow = flows[0]
    assert (str(flow.device[0]), flow.device[1]) == (DEVICE_IP, 5683)
    assert (str(flow.destination[0]), flow.destination[1]) == (PEER_IP, gateway.port)
    assert registration.address == flow.local, "the gateway sees the node at the bridge's socket for its flow"
    assert "/3303/0" in registration.object_paths
    await node.console.expect(f"Registration Done (EP='{ENDPOINT}')", timeout=WAIT)
    # the node reports its SLIP address as its IP address
    assert (await gateway.read(ENDPOINT, "/4/0/4"))[Path(4, 0, 4, 0)] == DEVICE_IP


async def test_reads_and_writes_over_slip(node: SlipNode, gateway: Gateway) -> None:
    device = await gateway.read(ENDPOINT, "/3/0")
    assert device[Path(3, 0, 17)] == "embServe Node" and device[Path(3, 0, 1)] == "mps2-an385"
    await gateway.write(ENDPOINT, "/3/0/13", 1700000000)  # TLV
    assert (await gateway.read(ENDPOINT, "/3/0/13"))[Path(3, 0, 13)] >= 1700000000
    await gateway.write(ENDPOINT, "/1/0", {Path(1, 0, 2): 1, Path(1, 0, 3): 120}, replace=False)
    server = await gateway.read(ENDPOINT, "/1/0")
    assert (server[Path(1, 0, 2)], server[Path(1, 0, 3)]) == (1, 120)
    await node.shell.exec("sensor set temperature 17.25")
    assert (await gateway.read(ENDPOINT, "/3303/0/5700"))[Path(3303, 0, 5700)] == pytest.approx(17.25)
    stats = node.bridge.stats
    assert stats.dropped == 0, stats.summary()


def service_package(tmp_path: FsPath) -> tuple[bytes, str | None]:
    """FITA's real service.json (~2.7 kB) as opaque; else the project's own, built by the SDK, as TLV."""
    if FITA_SERVICE.is_file():
        return FITA_SERVICE.read_bytes(), "opaque"
    from hil.sdk.builder import BuildError, build_service

    try:
        return build_service(PROJECT_SERVICE, tmp_path / "service-build").read_bytes(), None
    except BuildError as exc:
        pytest.skip(f"no service package: FITA's is not at {FITA_SERVICE} and the SDK build failed: {exc}")


async def test_block1_package_write_installs_and_the_service_reports(
    node: SlipNode, gateway: Gateway, tmp_path: FsPath
) -> None:
    package, fmt = service_package(tmp_path)
    assert len(package) > 2048, "the write must take several Block1 blocks"
    before = node.bridge.stats.copy()
    await node.shell.exec("sensor set temperature 23.5")
    assert await gateway.create(ENDPOINT, "/9", instance_id=1000) == Path(9, 1000)
    await gateway.write(ENDPOINT, "/9/1000/2", package, fmt=fmt, timeout=20)
    sw = await gateway.read(ENDPOINT, "/9/1000")
    assert (sw[Path(9, 1000, 7)], sw[Path(9, 1000, 9)]) == (3, 3)  # DELIVERED, downloaded and verified
    carried = node.bridge.stats.bytes_out - before.bytes_out
    assert carried > len(package), f"only {carried} bytes went down the line for a {len(package)}-byte package"

    await gateway.execute(ENDPOINT, "/9/1000/4")
    assert (await gateway.read(ENDPOINT, "/9/1000/0"))[Path(9, 1000, 0)] == "temperature_sensor"
    async with gateway.observe(ENDPOINT, "/3303/0/5700") as readings:
        await asyncio.wait_for(anext(readings), WAIT)  # the current value
        await gateway.execute(ENDPOINT, "/9/1000/10")
        reading = await asyncio.wait_for(anext(readings), WAIT)  # the service's first output
        assert reading.value() == 23.5
    await node.console.expect("[temperature_sensor]", timeout=WAIT)
    assert node.bridge.stats.dropped == 0, node.bridge.stats.summary()


# --------------------------------------------------------------------------- the line itself


async def test_udp_echo_over_the_line(node: SlipNode) -> None:
    # every byte value, END and ESC included, survives the stuffing both ways
    payload = bytes(range(256)) * 4
    await node.inject(slip_encode(node.echo_request(payload)))
    assert await node.sink.next("UDP echo") == payload


async def test_bad_frames_on_the_line_do_not_break_the_link(node: SlipNode, gateway: Gateway) -> None:
    before = await node.slip_counters()
    rng = random.Random(8)
    noise = bytes(b for b in (rng.randrange(256) for _ in range(3000)) if b not in (0xC0, 0xDB))[:1000]
    good = node.echo_request(b"x")
    bad_ip_checksum = good[:10] + bytes([good[10] ^ 0xFF]) + good[11:]
    bad_udp_checksum = good[:26] + bytes([good[26] ^ 0xFF]) + good[27:]
    junk = [
        noise + b"\xc0",                                                # line noise, then END
        b"\xc0\x45\x00\xdb\x41\x00\x1c\xc0",                            # ESC followed by neither code
        b"\xc0" + good[:-1] + b"\xdb\xc0",                              # ESC right before END
        b"\xc0" + b"\x45" * 3000 + b"\xc0",                             # longer than the MTU
        slip_encode(b"\x45\x00"),                                       # truncated IPv4 header
        slip_encode(bad_ip_checksum),
        slip_encode(bad_udp_checksum),
        slip_encode(bytes([0x60]) + bytes(47)),                         # IPv6: not spoken here
        slip_encode(build_ipv4(PEER_IP, DEVICE_IP, 6, bytes(20))),      # TCP: nobody listens
        slip_encode(build_udp(PEER_IP, SINK_PORT, "192.0.2.99", ECHO_PORT, b"not for us")),
    ]
    for frame in junk:
        await node.inject(frame)
    await node.inject(slip_encode(node.echo_request(b"still there?")))
    assert await node.sink.next("UDP echo after the junk") == b"still there?"
    assert node.sink.received.empty(), "only the good frame may be answered"

    after = await node.slip_counters()
    assert after["bad_escape"] - before["bad_escape"] == 2, (before, after)
    assert after["oversize"] - before["oversize"] == 1, (before, after)
    # noise, both bad escapes, oversize, truncated, two checksums, IPv6
    assert after["rx_dropped"] - before["rx_dropped"] >= 8, (before, after)
    # LwM2M still works, and the device never put a bad frame on the line
    assert (await gateway.read(ENDPOINT, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
    assert node.bridge.stats.dropped == 0, node.bridge.stats.summary()


async def burst_of_echoes(node: SlipNode, count: int, size: int) -> None:
    payloads = [bytes([i]) * size for i in range(count)]
    await node.inject(b"".join(slip_encode(node.echo_request(p, identification=i)) for i, p in enumerate(payloads)))
    echoed = [await node.sink.next(f"echo {i} of {count}", timeout=20) for i in range(count)]
    assert echoed == payloads


async def test_a_burst_larger_than_the_receive_ring_loses_nothing(node: SlipNode) -> None:
    # 30 kB in one write, more than UART1's 8 KiB ring
    await burst_of_echoes(node, 30, 1000)
    counters = await node.slip_counters()
    assert counters["bad_escape"] == counters["oversize"] == counters["rx_dropped"] == 0, counters


async def test_a_full_receive_ring_holds_the_line_instead_of_dropping_bytes(
    tiny_ring_elf: FsPath, gateway: Gateway, tmp_path: FsPath
) -> None:
    # QEMU delivers host bytes slower than the main loop takes them, so only a
    # tiny ring fills up: while the firmware sends one echo, the next arrives.
    async with slip_node(tiny_ring_elf, tmp_path, gateway) as node:
        await burst_of_echoes(node, 10, 1400)
        counters = await node.slip_counters()
    assert counters["line_pauses"] > 0, f"the ring never filled, so the pause was not exercised: {counters}"
    assert counters["bad_escape"] == counters["oversize"] == counters["rx_dropped"] == 0, counters


# --------------------------------------------------------------------------- the QEMU target in SLIP mode


async def test_qemu_target_over_slip_registers_and_comes_back_after_reboot(
    eth_elf: FsPath, gateway: Gateway, tmp_path: FsPath
) -> None:
    from hil.targets.qemu import QemuTarget

    config = TargetConfig(endpoint=ENDPOINT, log_dir=tmp_path, firmware=eth_elf, options={"net": "slip"})
    async with QemuTarget(config) as target:
        uri = target.device_server_uri(gateway.host, gateway.port)
        assert uri == f"coap://{PEER_IP}:{gateway.port}"
        await target.bootstrap(uri)
        await gateway.wait_for_registration(ENDPOINT, timeout=WAIT)
        assert (await gateway.read(ENDPOINT, "/4/0/4"))[Path(4, 0, 4, 0)] == DEVICE_IP
        first_bridge = target.bridge
        assert first_bridge is not None and first_bridge.stats.datagrams_to_gateway >= 1

        async with gateway.subscribe() as events:
            await target.reboot()
            kinds = [(await events.get(timeout=WAIT)).kind for _ in range(2)]
        assert kinds == ["deregistered", "registered"], kinds
        assert target.restarts == 1
        assert target.bridge is not None and target.bridge is not first_bridge
        assert first_bridge.link_closed
        assert (await gateway.read(ENDPOINT, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
    assert (tmp_path / f"{ENDPOINT}.slip.log").read_text().count("SLIP flow opened") == 2


def test_qemu_target_rejects_an_unknown_net_mode(tmp_path: FsPath) -> None:
    from hil.targets.qemu import QemuTarget

    with pytest.raises(TargetError, match=r"net='wifi': the QEMU target supports eth or slip"):
        QemuTarget(TargetConfig(endpoint=ENDPOINT, log_dir=tmp_path, options={"net": "wifi"}))
