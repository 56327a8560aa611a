"""What the QEMU integration tests share: the firmware build and child pytest runs.

The firmware is built once per pytest process into a private directory (a
build takes ~13 s on 2 cores, and several modules need it), never into
firmware/build, which a developer may be rebuilding at the same time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FITA_SERVICE = REPO.parent / "shared" / "fita" / "temperature_sensor" / "service.json"
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")

_built: dict[str, Path] = {}


def skip_without_qemu_tools() -> None:
    missing = [tool for tool in QEMU_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot run the firmware under QEMU: {', '.join(missing)} not installed")


def firmware_elf(tmp_path_factory: pytest.TempPathFactory, net: str = "eth") -> Path:
    """The reference firmware, built on first use in this process; skips when the tools are missing."""
    skip_without_qemu_tools()
    if net not in _built:
        build = tmp_path_factory.mktemp(f"firmware-build-{net}")
        run = subprocess.run(
            ["make", "-s", "-C", str(REPO / "firmware"), f"BUILD={build}", f"NET={net}", f"-j{os.cpu_count() or 2}"],
            check=False, capture_output=True, text=True, timeout=600,
        )
        assert run.returncode == 0, f"firmware build failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        _built[net] = build / "embserve.elf"
    return _built[net]


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
