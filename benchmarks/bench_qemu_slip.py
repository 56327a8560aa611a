"""Reference firmware over SLIP (UART1) on QEMU, and SLIP against LAN9118.

Three sets of figures, the firmware built once into a temporary directory:

- the line alone: the benchmark is the node's SLIP peer (192.0.2.1, a
  :class:`hil.net.endpoint.SlipEndpoint` on QEMU's UART1 socket) and talks to
  the firmware's UDP echo port: round trip by size, one datagram in flight,
  and echo throughput with a few in flight;
- LwM2M through the real bridge to the real gateway: registration time, read
  round trip, the Block1 write of a ~2.7 kB service.json, deploy -> first
  reading;
- the same LwM2M figures over the LAN9118 and QEMU user networking.

Counts are fixed and every wait is bounded.

    python -m benchmarks qemu_slip
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath

from hil.console import Console, Shell
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine
from hil.net import SlipBridge, StreamLink
from hil.net.endpoint import SlipEndpoint

REPO = FsPath(__file__).resolve().parents[1]
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
PROJECT_SERVICE = REPO / "services" / "temperature_sensor"
DEVICE_IP = "192.0.2.2"
PEER_IP = "192.0.2.1"
ECHO_PORT = 7
BOOTS = 3
ECHOES = 100
STREAM = 60  # datagrams in the throughput run
WINDOW = 4
READS = 100
TIMEOUT = 10.0


def build(out: FsPath) -> FsPath:
    run = subprocess.run(
        ["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={out}", "-j2"], check=False, capture_output=True, text=True
    )
    if run.returncode != 0:
        sys.exit(f"firmware build failed:\n{run.stdout}\n{run.stderr}")
    return out / "embserve.elf"


def package(tmp: FsPath) -> tuple[bytes, str | None]:
    """FITA's service.json (~2.7 kB) when /work/shared is there, else the project's own built by the SDK."""
    if FITA_SERVICE.is_file():
        return FITA_SERVICE.read_bytes(), "opaque"
    from hil.sdk import build_service

    return build_service(PROJECT_SERVICE, tmp / "service").read_bytes(), None


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"median {ms(statistics.median(ordered))}, p95 {ms(ordered[int(0.95 * (len(ordered) - 1))])}, max {ms(ordered[-1])}"


class Node:
    """QEMU with its console; ``net`` is "slip" (UART1 socket, no NIC) or "eth" (LAN9118, user networking)."""

    def __init__(self, elf: FsPath, log_dir: FsPath, net: str, endpoint: str = "node1"):
        self.net = net
        self.endpoint = endpoint
        slip = net == "slip"
        self.qemu = QemuMachine(elf, log_dir=log_dir, nic=None if slip else "lan9118", slip=slip, name=f"qemu-{endpoint}")
        self.console = Console(endpoint, log_dir / f"{endpoint}.console.log")
        self.shell = Shell(self.console)
        self.bridge: SlipBridge | None = None
        self._running = contextlib.AsyncExitStack()

    async def boot(self) -> None:
        await self._running.enter_async_context(self.qemu)
        await self._running.enter_async_context(self.qemu.console_attached(self.console))
        await self.console.expect_prompt(timeout=TIMEOUT)
        if self.net == "slip":
            await self.shell.exec("net iface slip")

    def line(self) -> StreamLink:
        return self.qemu.slip_link("UART1")

    async def register(self, gw: Gateway) -> None:
        if self.net == "slip":
            self.bridge = SlipBridge(self.line(), gateway=("127.0.0.1", gw.port), device_gateway_ip=PEER_IP, log_interval=None)
            await self.bridge.start()
            server = f"coap://{PEER_IP}:{gw.port}"
        else:
            server = f"coap://10.0.2.2:{gw.port}"
        await self.console.send_line(f"embserve connector lwm2m server_add {server} {self.endpoint}")
        await gw.wait_for_registration(self.endpoint, timeout=TIMEOUT)

    async def close(self) -> None:
        if self.bridge is not None:
            await self.bridge.close()
        await self._running.aclose()
        self.console.close()


@contextlib.asynccontextmanager
async def running(elf: FsPath, log_dir: FsPath, net: str):
    node = Node(elf, log_dir, net)
    try:
        await node.boot()
        yield node
    finally:
        await node.close()


# ---------------------------------------------------------------------------------- the line


async def line_figures(elf: FsPath, tmp: FsPath) -> None:
    async with running(elf, tmp / "line", "slip") as node, SlipEndpoint(node.line(), ip=PEER_IP) as peer:
        for size in (16, 256, 1024):
            payload = bytes(i & 0xFF for i in range(size))
            times = []
            for _ in range(ECHOES):
                start = time.perf_counter()
                await peer.send_udp(40000, DEVICE_IP, ECHO_PORT, payload)
                _, datagram = await peer.receive_udp(TIMEOUT)
                times.append(time.perf_counter() - start)
                assert datagram.payload == payload
            print(f"SLIP line, UDP echo round trip, {size:4d} B ({ECHOES}x, one in flight): {spread(times)}")

        size = 1024
        payload = b"\xc0\xdb" * 8 + b"y" * (size - 16)  # a few bytes that need stuffing
        sent = received = 0
        start = time.perf_counter()
        while received < STREAM:
            while sent < STREAM and sent - received < WINDOW:
                await peer.send_udp(40001, DEVICE_IP, ECHO_PORT, payload)
                sent += 1
            _, datagram = await peer.receive_udp(TIMEOUT)
            assert datagram.payload == payload
            received += 1
        elapsed = time.perf_counter() - start
        print(
            f"SLIP line, UDP echo throughput, {size} B x {STREAM}, window {WINDOW}: "
            f"{received * size / elapsed / 1024:.1f} KiB/s of payload each way ({received / elapsed:.1f} datagrams/s)"
        )
        counters = [line for line in await node.shell.exec("net iface") if line.startswith("SLIP")]
        print(f"  firmware: {counters[0] if counters else '?'}")


# ---------------------------------------------------------------------------------- LwM2M, SLIP vs LAN9118


async def lwm2m_figures(elf: FsPath, tmp: FsPath, net: str, service: tuple[bytes, str | None]) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with Gateway(host="127.0.0.1", port=0) as gw:
        boots = []
        for i in range(BOOTS):
            node = Node(elf, tmp / f"{net}-boot{i}", net, endpoint=f"boot{i}")
            try:
                await node.boot()
                start = time.monotonic()
                await node.register(gw)
                assert node.qemu.started_at is not None
                boots.append((time.monotonic() - node.qemu.started_at, time.monotonic() - start))
            finally:
                await node.close()
        figures["boot"] = statistics.median(b[0] for b in boots)
        figures["register"] = statistics.median(b[1] for b in boots)
        print(
            f"{net:4s}: QEMU start -> registered ({BOOTS} boots): median {ms(figures['boot'])}; "
            f"server_add -> registered: median {ms(figures['register'])}"
        )

        node = Node(elf, tmp / f"{net}-node", net)
        try:
            await node.boot()
            await node.register(gw)
            times = []
            for _ in range(READS):
                start = time.perf_counter()
                await gw.read("node1", "/3/0/17", fmt="text")
                times.append(time.perf_counter() - start)
            figures["read"] = statistics.median(times)
            print(f"{net:4s}: LwM2M read /3/0/17 ({READS}x): {spread(times)}")

            data, fmt = service
            await node.shell.exec("sensor set temperature 23.5")
            async with gw.observe("node1", "/3303/0/5700") as readings:
                await asyncio.wait_for(anext(readings), TIMEOUT)  # the current value
                deploy_start = time.perf_counter()
                await gw.create("node1", "/9", instance_id=1000)
                start = time.perf_counter()
                await gw.write("node1", "/9/1000/2", data, fmt=fmt, timeout=20)
                figures["block1"] = time.perf_counter() - start
                await gw.execute("node1", "/9/1000/4")
                activate = time.perf_counter()
                await gw.execute("node1", "/9/1000/10")
                await asyncio.wait_for(anext(readings), TIMEOUT)
                end = time.perf_counter()
            figures["activate"] = end - activate
            figures["deploy"] = end - deploy_start
            print(
                f"{net:4s}: Block1 write of service.json ({len(data)} B) {ms(figures['block1'])}; "
                f"activate -> first reading {ms(figures['activate'])}; "
                f"deploy (create, write, install, activate) -> first reading {ms(figures['deploy'])}"
            )
            if node.bridge is not None:
                print(f"  bridge: {node.bridge.stats.summary()}")
        finally:
            await node.close()
    return figures


async def main() -> None:
    logging.getLogger("hil.net.slip").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-qemu-slip-") as tmp_name:
        tmp = FsPath(tmp_name)
        elf = build(tmp / "build")
        await line_figures(elf, tmp)
        service = package(tmp)
        slip = await lwm2m_figures(elf, tmp, "slip", service)
        eth = await lwm2m_figures(elf, tmp, "eth", service)
        print(
            "SLIP / LAN9118: "
            + ", ".join(f"{key} {slip[key] / eth[key]:.2f}x" for key in ("boot", "read", "block1", "activate", "deploy"))
        )


if __name__ == "__main__":
    asyncio.run(main())
