"""What the QEMU integration tests share: the firmware build, a booted node, LwM2M set-up, child pytest runs.

The firmware is built once per pytest process and build configuration into a
private directory (a build takes ~13 s on 2 cores, and several modules need
it), never into firmware/build, which a developer may be rebuilding at the
same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hil.console import Console, Shell
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine
from hil.lwm2m.model import ObjLnk

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")
GUEST_HOST = "10.0.2.2"  # the host's loopback as QEMU user networking shows it to the guest

_built: dict[tuple[str, ...], Path] = {}


# --------------------------------------------------------------------------- the firmware


def skip_without_qemu_tools() -> None:
    missing = [tool for tool in QEMU_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot run the firmware under QEMU: {', '.join(missing)} not installed")


def firmware_elf(tmp_path_factory: pytest.TempPathFactory, net: str = "eth", *make_args: str) -> Path:
    """The reference firmware, built on first use in this process; skips when the tools are missing.

    ``make_args`` (e.g. ``EXTRA_CFLAGS=...``) make a build of its own.
    """
    skip_without_qemu_tools()
    key = (net, *make_args)
    if key not in _built:
        build = tmp_path_factory.mktemp(f"firmware-build-{net}")
        run = subprocess.run(
            ["make", "-s", "-C", str(FIRMWARE_DIR), f"BUILD={build}", f"NET={net}", *make_args, f"-j{os.cpu_count() or 2}"],
            check=False, capture_output=True, text=True, timeout=600,
        )
        what = " ".join(key)
        assert run.returncode == 0, f"firmware build (NET={what}) failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        elf = build / "embserve.elf"
        assert elf.is_file(), f"make succeeded but {elf} is missing:\n{run.stdout}"
        _built[key] = elf
    return _built[key]


def sdk_service(src: Path, out: Path) -> bytes:
    """The service.json the project SDK builds from ``src``; skips when the SDK cannot build it."""
    from hil.sdk.builder import BuildError, build_service

    try:
        return build_service(src, out).read_bytes()
    except BuildError as exc:
        pytest.skip(f"cannot build {src.name} with the SDK: {exc}")


# --------------------------------------------------------------------------- a booted node


@dataclass
class FirmwareNode:
    qemu: QemuMachine
    console: Console
    shell: Shell


def node_console(endpoint: str, log_dir: Path) -> Console:
    """A node's console, logged to ``ENDPOINT.console.log``; a fault the firmware did not contain fails any wait."""
    console = Console(f"{endpoint} console", log_dir / f"{endpoint}.console.log")
    console.fail_on("*** FATAL")
    return console


@contextlib.asynccontextmanager
async def attached_console(qemu: QemuMachine, console: Console) -> AsyncIterator[None]:
    """``console`` fed from a running QEMU's UART0 and writing back to it; closed when the block ends."""
    with contextlib.closing(console):
        async with qemu.console_attached(console):
            yield


@contextlib.asynccontextmanager
async def booted(
    elf: Path, log_dir: Path, console: Console, *, prompt_timeout: float = 10.0, **qemu_options: object
) -> AsyncIterator[FirmwareNode]:
    """QEMU running ``elf`` with ``console`` attached, past the first prompt; stopped when the block ends."""
    qemu = QemuMachine(elf, log_dir=log_dir, **qemu_options)  # type: ignore[arg-type]
    async with qemu, attached_console(qemu, console):
        await console.expect_prompt(timeout=prompt_timeout)
        yield FirmwareNode(qemu, console, Shell(console))


# --------------------------------------------------------------------------- LwM2M


async def server_add(shell: Shell, endpoint: str, port: int, host: str = GUEST_HOST) -> None:
    """Bootstrap the node from its shell: register as ``endpoint`` to ``coap://host:port``."""
    lines = await shell.exec(f"embserve connector lwm2m server_add coap://{host}:{port} {endpoint}")
    assert any("added" in line for line in lines), f"server_add was refused: {lines}"


async def register(
    shell: Shell, gateway: Gateway, endpoint: str, *, host: str = GUEST_HOST, port: int | None = None,
    timeout: float = 10.0,
) -> None:
    """Bootstrap the node (to ``gateway``'s port unless told another) and wait until it has registered."""
    await server_add(shell, endpoint, gateway.port if port is None else port, host)
    await gateway.wait_for_registration(endpoint, timeout=timeout)


async def install(
    gateway: Gateway, endpoint: str, inst: int, package: bytes, *, write_timeout: float | None = None
) -> None:
    """Object 9 as the far-edge kubelet drives it: create /9/inst, write the package (opaque), execute Install."""
    await gateway.create(endpoint, "/9", instance_id=inst)
    await gateway.write(endpoint, f"/9/{inst}/2", package, fmt="opaque", timeout=write_timeout)
    await gateway.execute(endpoint, f"/9/{inst}/4")


async def service_monitor(gateway: Gateway, endpoint: str, inst: int) -> dict[int, object]:
    """The /35003 resources (27400..27404) of software package /9/inst."""
    monitors = await gateway.read(endpoint, "/35003")
    for path, value in monitors.items():
        if path.res == 27400 and value == ObjLnk(9, inst):
            return {p.res: v for p, v in monitors.items() if p.inst == path.inst}
    raise AssertionError(f"no /35003 instance links to 9:{inst}: {monitors}")


# --------------------------------------------------------------------------- child pytest


async def run_child_pytest(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 900.0
) -> tuple[int, str]:
    """``python -m pytest ARGS`` in the repository; its exit code and combined output.

    The child is killed when it outlives ``timeout`` (the error shows its last
    output) or the calling test is cancelled.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", *args,
        cwd=REPO, env=dict(env) if env is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output = bytearray()

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            output.extend(chunk)

    reader = asyncio.create_task(collect())
    try:
        await asyncio.wait_for(asyncio.gather(reader, proc.wait()), timeout)
    except TimeoutError:
        raise AssertionError(f"pytest {' '.join(args)} still running after {timeout:g} s; its last output:\n"
                             f"{output.decode(errors='replace')[-4000:]}") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return proc.returncode or 0, output.decode(errors="replace")
