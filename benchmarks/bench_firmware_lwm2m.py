"""Reference firmware under QEMU: registration time, read round trip, deploy steps.

Builds the firmware into a temporary directory, then for several boots
measures QEMU process start -> registration seen by the gateway (the node is
bootstrapped from its shell as soon as the prompt appears), and on one node
the round trip of LwM2M reads, the Block1 write of FITA's service.json (~2.7
kB), and activate -> first reading of the service.

    python -m benchmarks firmware_lwm2m
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath

from hil.console import Console
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine

REPO = FsPath(__file__).resolve().parents[1]
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
BOOTS = 5
READS = 200


def build(out: FsPath) -> FsPath:
    run = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={out}", "-j2"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"firmware build failed:\n{run.stdout}\n{run.stderr}")
    return out / "embserve.elf"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class BenchNode:
    """QEMU with its console attached; ``close()`` stops both."""

    def __init__(self, elf: FsPath, log_dir: FsPath, endpoint: str):
        self.endpoint = endpoint
        self.qemu = QemuMachine(elf, log_dir=log_dir, name=f"qemu-{endpoint}")
        self.console = Console(endpoint, log_dir / f"{endpoint}.console.log")
        self._running = contextlib.AsyncExitStack()

    async def boot_and_register(self, gw: Gateway) -> float:
        """Seconds from QEMU process start to the gateway seeing the registration."""
        await self._running.enter_async_context(self.qemu)
        await self._running.enter_async_context(self.qemu.console_attached(self.console))
        assert self.qemu.started_at is not None
        await self.console.expect_prompt(timeout=10)
        server = f"coap://10.0.2.2:{gw.port}"
        await self.console.send_line(f"embserve connector lwm2m server_add {server} {self.endpoint}")
        await gw.wait_for_registration(self.endpoint, timeout=10)
        return time.monotonic() - self.qemu.started_at

    async def close(self) -> None:
        await self._running.aclose()
        self.console.close()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fw-") as tmp:
        tmpdir = FsPath(tmp)
        elf = build(tmpdir / "build")
        async with Gateway(host="127.0.0.1", port=0) as gw:
            register_times = []
            for i in range(BOOTS):
                booted = BenchNode(elf, tmpdir / f"boot{i}", f"bench{i}")
                try:
                    register_times.append(await booted.boot_and_register(gw))
                finally:
                    await booted.close()
            print(
                f"QEMU start -> registered ({BOOTS} boots): median {ms(statistics.median(register_times))}, "
                f"max {ms(max(register_times))}"
            )

            node = BenchNode(elf, tmpdir / "node", "node1")
            try:
                await node.boot_and_register(gw)
                for path, fmt in (("/3/0/17", "text"), ("/3/0", "tlv"), ("/3303/0/5700", "tlv")):
                    rtts = []
                    for _ in range(READS):
                        start = time.perf_counter()
                        await gw.read("node1", path, fmt=fmt)
                        rtts.append(time.perf_counter() - start)
                    rtts.sort()
                    print(
                        f"read {path} ({fmt}, {READS}x): median {ms(statistics.median(rtts))}, "
                        f"p95 {ms(rtts[int(0.95 * len(rtts))])}"
                    )
                if not FITA_SERVICE.is_file():
                    print(f"deploy figures skipped: {FITA_SERVICE} not available")
                    return
                package = FITA_SERVICE.read_bytes()
                await gw.create("node1", "/9", instance_id=1000)
                start = time.perf_counter()
                await gw.write("node1", "/9/1000/2", package, fmt="opaque", timeout=20)
                print(f"Block1 write of service.json ({len(package)} B): {ms(time.perf_counter() - start)}")
                start = time.perf_counter()
                await gw.execute("node1", "/9/1000/4")
                print(f"install: {ms(time.perf_counter() - start)}")
                async with gw.observe("node1", "/3303/0/5700") as readings:
                    await anext(readings)
                    start = time.perf_counter()
                    await gw.execute("node1", "/9/1000/10")
                    await asyncio.wait_for(anext(readings), 10)
                    print(f"activate -> first reading notified: {ms(time.perf_counter() - start)}")
            finally:
                await node.close()


if __name__ == "__main__":
    asyncio.run(main())
