"""Device time on QEMU: readings stamped when they left the device, and a debugger's stop freezing it.

The reference firmware on QEMU's mps2-an385 through the QEMU target, a real
gateway, and the project's temperature service deployed over object 9 as
FITA's far-edge kubelet does it (create, write package, install, activate).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from conftest import REPO, firmware_elf

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.infra.ports import free_port
from hil.lwm2m.model import Path as LwPath
from hil.readings import ReadingCollector
from hil.targets.base import TargetConfig
from hil.targets.qemu import QemuTarget
from qemu_helpers import sdk_service

pytestmark = pytest.mark.emulation

SERVICE = REPO / "services" / "temperature_sensor"
RATE_MS = 2000


def qemu_target(tmp_path: Path, elf: Path, **options) -> QemuTarget:
    return QemuTarget(TargetConfig(endpoint="node1", log_dir=tmp_path, board=get_board("mps2_an385"), firmware=elf,
                                   options=options))


async def registered(target: QemuTarget, gateway: Gateway) -> None:
    target.govern_time(gateway.in_flight)
    await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
    await gateway.wait_for_registration("node1", timeout=30)


async def deploy(gateway: Gateway, package: bytes, inst: int = 1000) -> None:
    await gateway.create("node1", "/9", instance_id=inst)
    await gateway.write("node1", f"/9/{inst}/2", package, fmt="opaque", timeout=20)
    await gateway.execute("node1", f"/9/{inst}/4")
    await gateway.execute("node1", f"/9/{inst}/10")


async def test_reading_device_times_follow_the_service_period_while_wall_intervals_are_far_shorter(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elf = firmware_elf(tmp_path_factory)
    package = sdk_service(SERVICE, tmp_path / "service")
    async with Gateway(host="127.0.0.1", port=0) as gateway, qemu_target(tmp_path, elf) as target:
        await registered(target, gateway)
        await deploy(gateway, package)
        async with ReadingCollector(gateway, "node1", device_time=target.device_time_of) as collector:
            await target.shell.exec(f"embserve service input 1000 rate {RATE_MS}")
            await collector.wait(2, timeout=30)  # the service first finishes its 30 s default sleep
            fresh = await collector.wait_more(5, timeout=30)
            device = collector.intervals(fresh)
            wall = [b.time - a.time for a, b in zip(fresh, fresh[1:])]
    assert all(r.device_time is not None for r in fresh), fresh
    # Exact in device time: the service sleeps 2000 ms between readings, the device takes a few ms to send.
    assert device == pytest.approx([RATE_MS / 1000] * 4, abs=0.02), device
    assert sum(wall) < sum(device) / 4, f"idle device time was not skipped: wall-clock intervals {wall}"


def gdb_packet(payload: str) -> bytes:
    return f"${payload}#{sum(payload.encode()) % 256:02x}".encode()


async def gdb_stop_reply(reader: asyncio.StreamReader, timeout: float = 10.0) -> str:
    """The next stop reply (``$T05...#xx`` or ``$S02#xx``) from QEMU's gdbstub, acknowledged."""
    data = b""
    async with asyncio.timeout(timeout):
        while not (data.count(b"$") and b"#" in data[data.rindex(b"$"):] and len(data) >= data.rindex(b"#") + 3):
            data += await reader.read(1024)
    packet = data[data.rindex(b"$") + 1 : data.rindex(b"#")].decode()
    assert packet[:1] in ("T", "S"), f"not a stop reply: {data!r}"
    return packet


async def test_device_time_stands_still_while_gdb_holds_the_cpu(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With a debugger the harness leaves stop and cont to it; a halt freezes device time, and a request
    that waited through the halt is answered after it, with no time jump on the device."""
    elf = firmware_elf(tmp_path_factory)
    port = free_port()
    target = qemu_target(tmp_path, elf, qemu_extra_args=["-gdb", f"tcp:127.0.0.1:{port},server=on,wait=off"])
    assert target.debugger and target.governor is None and target.clock is not None
    async with Gateway(host="127.0.0.1", port=0) as gateway, target:
        await registered(target, gateway)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            writer.write(b"\x03")  # Ctrl-C: the debugger stops the CPU
            await gdb_stop_reply(reader)
            halted = await target.clock.device_time()
            read = asyncio.create_task(gateway.read("node1", "/3/0/1", timeout=30))
            wall = time.monotonic()
            await asyncio.sleep(3.0)
            assert not read.done(), "the device answered while halted"
            assert await target.clock.device_time() - halted < 0.001, "device time moved while the CPU was halted"
            writer.write(b"+" + gdb_packet("c"))  # continue
            await writer.drain()
            answer = await read
            resumed = await target.clock.device_time()
            elapsed_wall = time.monotonic() - wall
        finally:
            writer.close()
    assert answer[LwPath(3, 0, 1)] == "mps2-an385"
    # Over the whole stop-and-go the device saw only the time it ran: not the 3 s the debugger held it.
    assert resumed - halted < elapsed_wall - 2.5, (halted, resumed, elapsed_wall)
    console = (tmp_path / "node1.console.log").read_text()
    assert "registration failed" not in console and "no answer" not in console, console[-2000:]
