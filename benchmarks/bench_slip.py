"""SLIP bridge figures: codec speed, round trip and throughput over a loopback socketpair, and over QEMU.

A Python test device (:class:`hil.net.endpoint.SlipEndpoint`) on one end of
a socketpair line, the bridge on the other, a UDP echo server on loopback
behind it. Then, where the ARM toolchain and QEMU are installed, the
reference firmware under QEMU with its SLIP netif on UART1, registered to the
project's gateway through the bridge: LwM2M read round trips and a service
package write. Counts are fixed and every wait is bounded, so a run ends by
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hil.console import Console, Shell
from hil.gateway import Gateway
from hil.infra.qemu import QemuMachine
from hil.net.bridge import SlipBridge
from hil.net.endpoint import SlipEndpoint
from hil.net.ipv4 import build_udp, parse_udp
from hil.net.links import StreamLink
from hil.net.slip import SlipDecoder, slip_encode

ROUND_TRIPS = 1000
STREAM_DATAGRAMS = 5000
WINDOW = 32  # datagrams in flight in the throughput run
TIMEOUT = 5.0


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


def codec_figures() -> None:
    rng = random.Random(1)
    plain = [bytes(rng.randrange(0x20, 0x7F) for _ in range(1500)) for _ in range(200)]
    nasty = [bytes(rng.choice((0xC0, 0xDB, 0x41)) for _ in range(1500)) for _ in range(200)]  # two thirds escaped
    for name, frames in (("text", plain), ("escape-heavy", nasty)):
        start = time.perf_counter()
        stream = b"".join(slip_encode(f) for f in frames)
        encoded = time.perf_counter() - start
        decoder = SlipDecoder(max_frame=1500)
        start = time.perf_counter()
        out = decoder.feed(stream)
        decoded = time.perf_counter() - start
        assert out == frames
        size = sum(map(len, frames)) / 1e6
        print(f"codec {name:13s}: encode {size / encoded:7.1f} MB/s, decode {size / decoded:7.1f} MB/s (1500-byte frames)")


async def bridge_figures() -> None:
    loop = asyncio.get_running_loop()
    echo_transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    echo_address = echo_transport.get_extra_info("sockname")[:2]
    left, right = socket.socketpair()
    bridge_link = StreamLink(*await asyncio.open_connection(sock=left), name="bench-line")
    device_link = StreamLink(*await asyncio.open_connection(sock=right), name="bench-device")
    try:
        async with (
            SlipBridge(bridge_link, gateway=echo_address, log_interval=None) as bridge,
            SlipEndpoint(device_link) as device,
        ):
            await round_trips(device)
            await throughput(device, 64)
            await throughput(device, 1024)
            print(f"bridge stats: {bridge.stats.summary()}")
    finally:
        echo_transport.close()


async def round_trips(device: SlipEndpoint) -> None:
    payload = b"x" * 64
    times: list[float] = []
    for _ in range(ROUND_TRIPS):
        start = time.perf_counter()
        await device.send_udp(40000, "10.0.2.2", 5683, payload)
        await device.receive_udp(TIMEOUT)
        times.append(time.perf_counter() - start)
    times.sort()
    print(
        f"round trip, 64-byte UDP: median {statistics.median(times) * 1e6:6.0f} us, "
        f"p99 {times[int(len(times) * 0.99)] * 1e6:6.0f} us, max {times[-1] * 1e6:6.0f} us ({ROUND_TRIPS} sequential)"
    )


async def throughput(device: SlipEndpoint, size: int) -> None:
    # pre-encoded frames, so the figure is the bridge's cost, not the test device's
    frame = slip_encode(build_udp(device.ip, 40001, "10.0.2.2", 5683, b"y" * size))
    sent = received = 0
    start = time.perf_counter()
    while received < STREAM_DATAGRAMS:
        while sent < STREAM_DATAGRAMS and sent - received < WINDOW:
            await device.send_raw(frame)
            sent += 1
        packet = await device.receive(TIMEOUT)
        assert len(parse_udp(packet).payload) == size
        received += 1
    elapsed = time.perf_counter() - start
    line_bytes = 2 * received * len(frame) / elapsed
    print(
        f"throughput, {size:4d}-byte UDP: {received / elapsed:7.0f} datagrams/s each way, "
        f"{line_bytes / 1e6:5.2f} MB/s on the line both ways ({received} echoed, window {WINDOW}); "
        f"a 115200-baud UART carries 0.0115 MB/s"
    )


REPO = Path(__file__).resolve().parents[1]
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
QEMU_READS = 200


async def qemu_figures() -> None:
    missing = [tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(tool) is None]
    if missing or not (REPO / "firmware" / "src" / "slip.c").is_file():
        print(f"QEMU over SLIP: skipped ({', '.join(missing) + ' not installed' if missing else 'no SLIP netif in firmware/'})")
        return
    with tempfile.TemporaryDirectory(prefix="bench-slip-") as tmp:
        build = Path(tmp)
        run = await asyncio.to_thread(
            subprocess.run,
            ["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={build}", f"-j{os.cpu_count() or 2}"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if run.returncode != 0:
            print(f"QEMU over SLIP: firmware build failed:\n{run.stderr[-2000:]}")
            return
        console = Console("bench console", build / "console.log")
        with contextlib.closing(console):
            async with (
                Gateway(request_timeout=TIMEOUT) as gateway,
                QemuMachine(build / "embserve.elf", log_dir=build, nic=None, slip=True) as qemu,
                qemu.console_attached(console),
                SlipBridge(qemu.slip_link(), ("127.0.0.1", gateway.port), device_gateway_ip="192.0.2.1", log_interval=None) as bridge,
            ):
                await measure_node(console, gateway, bridge)


async def measure_node(console: Console, gateway: Gateway, bridge: SlipBridge) -> None:
    shell = Shell(console)
    await console.expect_prompt(timeout=10)
    await shell.exec("net iface slip")
    start = time.perf_counter()
    await shell.exec("embserve connector lwm2m server_add coap://192.0.2.1:5683 node1")
    await gateway.wait_for_registration("node1", timeout=10)
    print(f"QEMU over SLIP: registration {1e3 * (time.perf_counter() - start):6.1f} ms from server_add")
    times: list[float] = []
    for _ in range(QEMU_READS):
        start = time.perf_counter()
        await gateway.read("node1", "/3/0/17", fmt="text")
        times.append(time.perf_counter() - start)
    times.sort()
    print(
        f"QEMU over SLIP: LwM2M read round trip median {statistics.median(times) * 1e3:5.2f} ms, "
        f"p99 {times[int(len(times) * 0.99)] * 1e3:5.2f} ms ({QEMU_READS} sequential)"
    )
    if FITA_SERVICE.is_file():
        package = FITA_SERVICE.read_bytes()
        await gateway.create("node1", "/9", instance_id=1000)
        start = time.perf_counter()
        await gateway.write("node1", "/9/1000/2", package, fmt="opaque", timeout=30)
        elapsed = time.perf_counter() - start
        print(f"QEMU over SLIP: {len(package)}-byte service package written in {elapsed * 1e3:6.1f} ms (CoAP Block1)")
    print(f"QEMU over SLIP bridge stats: {bridge.stats.summary()}")


async def main() -> None:
    logging.getLogger("hil.net.slip").setLevel(logging.ERROR)
    codec_figures()
    await bridge_figures()
    await qemu_figures()


if __name__ == "__main__":
    asyncio.run(main())
