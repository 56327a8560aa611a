"""The SLIP bridge against the reference firmware's SLIP netif, under QEMU ``mps2-an385``.

QEMU runs with no NIC backend and UART1 on a socket chardev (``QemuMachine(slip=True)``);
the bridge takes that socket as its line. The node brings its SLIP interface up
from the shell (``net iface slip``: 192.0.2.2, peer 192.0.2.1) and registers to
``coap://192.0.2.1:5683``, which the bridge maps to the project's gateway on
the host loopback. The firmware is built once per session into a private
directory (qemu_helpers), so these tests never race another build of ``firmware/build``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import pytest
from conftest import FIRMWARE_DIR, FITA_SERVICE, skip_without_qemu_tools
from conftest import firmware_elf as build_firmware
from qemu_helpers import FirmwareNode, attached_console, node_console
from qemu_helpers import register as register_node

from hil.console import Shell
from hil.gateway import Gateway
from hil.infra.qemu import QemuMachine
from hil.lwm2m.model import Path
from hil.net.bridge import SlipBridge
from hil.net.ipv4 import build_udp
from hil.net.slip import slip_encode

ENDPOINT = "slip-node"
NODE_IP = "192.0.2.2"  # the firmware's SLIP defaults (firmware/src/slip.h)
PEER_IP = "192.0.2.1"
WAIT = 10.0  # bound of every wait; the node registers within a second

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def firmware_elf(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    skip_without_qemu_tools()
    if not (FIRMWARE_DIR / "src" / "slip.c").is_file():
        pytest.skip(f"the reference firmware in {FIRMWARE_DIR} has no SLIP netif (src/slip.c)")
    return build_firmware(tmp_path_factory)  # once per session


@dataclass
class SlipNode(FirmwareNode):
    bridge: SlipBridge

    async def iface(self) -> str:
        return "\n".join(await self.shell.exec("net iface"))

    async def wait_iface(self, *wanted: str) -> str:
        """``net iface`` output once it shows every one of ``wanted`` (the node handles the line between commands)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            text = await self.iface()
            if all(w in text for w in wanted):
                return text
            if loop.time() > deadline:
                raise AssertionError(f"'net iface' never showed {wanted} within {WAIT} s; last output:\n{text}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def slip_node(elf: FsPath, log_dir: FsPath, gateway: Gateway, **bridge_options: Any) -> AsyncIterator[SlipNode]:
    """QEMU with UART1 bridged to ``gateway``, the node's SLIP interface up."""
    console = node_console(ENDPOINT, log_dir)
    async with QemuMachine(elf, log_dir=log_dir, nic=None, slip=True, name="qemu-slip") as qemu:
        assert qemu.slip_reader is not None and qemu.slip_writer is not None
        bridge_options.setdefault("log_interval", None)
        async with attached_console(qemu, console), SlipBridge(
            (qemu.slip_reader, qemu.slip_writer),
            gateway=("127.0.0.1", gateway.port),
            device_gateway_ip=PEER_IP,
            device_ip=NODE_IP,
            **bridge_options,
        ) as bridge:
            await console.expect_prompt(timeout=WAIT)
            lines = await Shell(console).exec("net iface slip")
            assert any(f"address {NODE_IP}" in line for line in lines), f"the SLIP interface did not come up: {lines}"
            yield SlipNode(qemu, console, Shell(console), bridge)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(host="127.0.0.1", port=0, request_timeout=WAIT) as gw:
        yield gw


async def register(node: SlipNode, gateway: Gateway) -> None:
    """Register to ``coap://PEER_IP:5683``, which the bridge maps to ``gateway``."""
    await register_node(node.shell, gateway, ENDPOINT, host=PEER_IP, port=5683, timeout=WAIT)


async def test_the_node_registers_and_is_managed_over_slip(firmware_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> None:
    async with slip_node(firmware_elf, tmp_path, gateway) as node:
        await register(node, gateway)
        registration = gateway.registration(ENDPOINT)
        (flow,) = node.bridge.flows
        assert flow.device[0].compressed == NODE_IP and registration.address[1] == flow.local[1]
        assert "/3/0" in registration.object_paths

        device = await gateway.read(ENDPOINT, "/3/0")
        assert device[Path(3, 0, 17)] == "embServe Node"
        await gateway.write(ENDPOINT, "/1/0/1", 120, fmt="text")
        assert (await gateway.read(ENDPOINT, "/1/0/1"))[Path(1, 0, 1)] == 120

        stats = node.bridge.stats
        assert stats.dropped == 0 and stats.datagrams_to_device >= 3
        iface = await node.iface()
        assert "bad escape 0, oversize 0" in iface, iface


async def test_a_service_package_crosses_the_line_block_by_block(firmware_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> None:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA artifacts not available at {FITA_SERVICE}")
    package = FITA_SERVICE.read_bytes()
    async with slip_node(firmware_elf, tmp_path, gateway) as node:
        await register(node, gateway)
        assert await gateway.create(ENDPOINT, "/9", instance_id=1000) == Path(9, 1000)
        # ~2.7 kB: CoAP Block1, each block a 1 kB datagram, byte-stuffed on UART1
        await gateway.write(ENDPOINT, "/9/1000/2", package, fmt="opaque", timeout=3 * WAIT)
        await gateway.execute(ENDPOINT, "/9/1000/4")
        software = await gateway.read(ENDPOINT, "/9/1000")
        assert software[Path(9, 1000, 0)] == "temperature_sensor"
        assert node.bridge.stats.dropped == 0


async def test_udp_from_the_node_reaches_a_routed_host_service(firmware_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> None:
    answers: list[tuple[bytes, Any]] = []

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            answers.append((data, addr))
            self.transport.sendto(b"echo:" + data, addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    try:
        echo = transport.get_extra_info("sockname")[:2]
        async with slip_node(firmware_elf, tmp_path, gateway, routes={(PEER_IP, 7): echo}) as node:
            await node.console.send_line(f"net udp send {PEER_IP} 7 over-the-line")
            await node.console.expect(f"net udp: received 18 bytes from {PEER_IP}:7: echo:over-the-line", timeout=WAIT)
            assert [data for data, _ in answers] == [b"over-the-line"]
    finally:
        transport.close()


async def test_line_noise_costs_the_node_one_frame_and_nothing_else(firmware_elf: FsPath, gateway: Gateway, tmp_path: FsPath) -> None:
    async with slip_node(firmware_elf, tmp_path, gateway) as node:
        # straight onto UART1, past the bridge's encoder: a broken escape, then a packet with a bad checksum
        bad_checksum = bytearray(build_udp(PEER_IP, 5683, NODE_IP, 7, b"x"))
        bad_checksum[10] ^= 0xFF
        await node.bridge.link.write(b"\xc0noise\xdb\x01more\xc0" + slip_encode(bytes(bad_checksum)))
        iface = await node.wait_iface("bad escape 1", "frames in 1,")
        assert "rx dropped 2" in iface, iface  # the escape at SLIP level, the checksum at IP level
        await register(node, gateway)
        assert (await gateway.read(ENDPOINT, "/3/0/17"))[Path(3, 0, 17)] == "embServe Node"
