"""What the firmware-on-QEMU tests share: a booted node with its console, LwM2M set-up, SDK-built services.

The firmware build, FITA's artifacts and child pytest runs are the whole
test tree's (the repository's conftest.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hil.console import Console, Shell
from hil.gateway.server import Gateway
from hil.infra.qemu import QemuMachine
from hil.lwm2m.model import ObjLnk

GUEST_HOST = "10.0.2.2"  # the host's loopback as QEMU user networking shows it to the guest


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
