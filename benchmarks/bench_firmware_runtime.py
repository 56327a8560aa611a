"""Reference firmware service runtime under QEMU: load time, RAM per service, context switches.

QEMU runs with ``-icount shift=0``: every guest instruction advances the
virtual clock by 1 ns, so the runtime's microsecond figures read as
thousands of instructions, independent of the host (multiply by the M3's
cycles per instruction and 40 ns per cycle at 25 MHz for real time).
Services are deployed over LwM2M through the project's gateway; the figures
come from the node's ``embserve service list``.

    python -m benchmarks firmware_runtime
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path as FsPath

from hil.console import Console, Shell
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine

REPO = FsPath(__file__).resolve().parents[1]
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
YIELDER = REPO / "benchmarks" / "services" / "yielder"
PROJECT_SERVICE = REPO / "services" / "temperature_sensor"
EP = "bench-rt"
_CLOCK = re.compile(r"runtime: (\d+) context switches, clock (\d+) us")
_DIAG = re.compile(r"load (\d+) us; code (\d+) lot (\d+) data (\d+) bss (\d+) B; stack loop (\d+)/(\d+) call (\d+)/(\d+) B")
_MEM = re.compile(r"^(\d+) (\S+) v\d+ \S+ cpu \S+ mem (\d+) B")


def build_firmware(out: FsPath) -> FsPath:
    run = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={out}", "-j2"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"firmware build failed:\n{run.stdout}\n{run.stderr}")
    return out / "embserve.elf"


def build_service(src: FsPath, out: FsPath) -> bytes:
    from hil.sdk.builder import build_service as sdk_build

    return sdk_build(src, out).read_bytes()


async def listing(shell: Shell) -> list[str]:
    return await shell.exec("embserve service list", timeout=20)


def clock(lines: list[str]) -> tuple[int, int]:
    for line in lines:
        if m := _CLOCK.search(line):
            return int(m.group(1)), int(m.group(2))
    raise RuntimeError(f"no runtime clock line in {lines}")


async def deploy(gw: Gateway, inst: int, package: bytes, activate: bool = True) -> None:
    await gw.create(EP, "/9", instance_id=inst)
    await gw.write(EP, f"/9/{inst}/2", package, fmt="opaque", timeout=60)
    await gw.execute(EP, f"/9/{inst}/4", timeout=30)
    if activate:
        await gw.execute(EP, f"/9/{inst}/10", timeout=30)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rt-") as tmp:
        tmpdir = FsPath(tmp)
        elf = build_firmware(tmpdir / "build")
        packages = {"temperature_sensor (SDK)": build_service(PROJECT_SERVICE, tmpdir / "temperature")}
        if FITA_SERVICE.is_file():
            packages = {"temperature_sensor (FITA)": FITA_SERVICE.read_bytes(), **packages}
        yielder = build_service(YIELDER, tmpdir / "yielder")

        async with Gateway(host="127.0.0.1", port=0) as gw:
            qemu = QemuMachine(elf, log_dir=tmpdir, icount="shift=0")
            console = Console(EP, tmpdir / "console.log")
            with contextlib.closing(console):
                async with qemu, qemu.console_attached(console):
                    await console.expect_prompt(timeout=20)
                    shell = Shell(console)
                    await shell.exec(f"embserve connector lwm2m server_add coap://10.0.2.2:{gw.port} {EP}")
                    await gw.wait_for_registration(EP, timeout=30)
                    await shell.exec("sensor set temperature 21.5")

                    for inst, (label, package) in enumerate(packages.items(), start=1000):
                        await deploy(gw, inst, package)
                        await console.expect("[temperature_sensor] Loop", timeout=30)
                    await asyncio.sleep(0.5)
                    lines = await listing(shell)
                    for i, line in enumerate(lines):
                        m = _MEM.match(line)
                        d = _DIAG.search(lines[i + 1]) if m and i + 1 < len(lines) else None
                        if not (m and d):
                            continue
                        label = list(packages)[int(m.group(1)) - 1000]
                        load, code, lot, data, bss, lpeak, lsize, cpeak, csize = map(int, d.groups())
                        print(
                            f"{label}: install (parse + base64 + load) {load} k-instructions; "
                            f"RAM {m.group(3)} B = code {code} + LOT {lot} + data {data} + bss {bss} "
                            f"+ stacks {lsize}+{csize} (+guards/alignment); stack peak loop {lpeak} B, call {cpeak} B"
                        )

                    await deploy(gw, 1010, yielder, activate=False)
                    await deploy(gw, 1011, yielder, activate=False)
                    switches0, clock0 = clock(await listing(shell))
                    await gw.execute(EP, "/9/1010/10", timeout=30)
                    await gw.execute(EP, "/9/1011/10", timeout=30)
                    await console.expect("[yielder] yielded 20000 times", timeout=120)
                    await console.expect("[yielder] yielded 20000 times", timeout=120)
                    switches1, clock1 = clock(await listing(shell))
                    switches = switches1 - switches0
                    print(
                        f"two yielding services: {switches} context switches in {clock1 - clock0} k-instructions "
                        f"(with two activations and a shell command): <= {1000 * (clock1 - clock0) / switches:.0f} instructions "
                        "per yield + switch"
                    )


if __name__ == "__main__":
    asyncio.run(main())
