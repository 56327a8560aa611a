"""What this repository's own test tree shares; users of the package get :mod:`hil.pytest_plugin` instead.

Tests import these names (``from conftest import FITA_SERVICE, wait_until``);
helpers that only one group of tests needs stay next to it
(``tests/integration/qemu_helpers.py``, ``northbound_helpers.py``).

* Where things are: the checkout (:data:`REPO`), and FITA's real artifacts
  (:data:`SHARED`: ``../shared`` next to the checkout, or the directory named
  by ``EMBSERVE_HIL_SHARED``); tests that need them skip, naming the path,
  when they are absent. They are read from there, never copied in.
* The reference firmware, built once per pytest process and build
  configuration (:func:`firmware_elf`).
* Waiting for a condition (:func:`wait_until`) and running the suite in a
  child pytest (:func:`run_child_pytest`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("EMBSERVE_HIL_SHARED") or REPO.parent / "shared")
FITA = SHARED / "fita"
FITA_SERVICE = FITA / "temperature_sensor" / "service.json"
FIRMWARE_DIR = REPO / "firmware"
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")
WAIT = 10.0  # default bound of a wait; a healthy run needs milliseconds

_built: dict[tuple[str, ...], Path] = {}


# --------------------------------------------------------------------------- the reference firmware


def skip_without_qemu_tools() -> None:
    missing = [tool for tool in QEMU_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot run the firmware under QEMU: {', '.join(missing)} not installed")


def firmware_elf(tmp_path_factory: pytest.TempPathFactory, net: str = "eth", *make_args: str, qemu: bool = True) -> Path:
    """The reference firmware, built on first use in this process; skips when the tools are missing.

    It goes into a private directory (a build takes ~13 s on 2 cores, and
    several modules need it), never into firmware/build, which a developer may
    be rebuilding at the same time. ``make_args`` (e.g. ``EXTRA_CFLAGS=...``)
    make a build of its own; ``qemu=False`` builds for another emulator
    without asking for QEMU.
    """
    if qemu:
        skip_without_qemu_tools()
    else:
        missing = [tool for tool in ("arm-none-eabi-gcc", "make") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"cannot build the reference firmware: {', '.join(missing)} not installed")
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


# --------------------------------------------------------------------------- waiting


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fails naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- child pytest


CHILD_STOP_TIMEOUT = 30.0  # seconds a child pytest gets to tear down after SIGTERM


async def stop_child(proc: asyncio.subprocess.Process, how: int = signal.SIGTERM,
                     grace: float = CHILD_STOP_TIMEOUT) -> None:
    """Stop a child pytest that is still running: ``how`` first (SIGTERM, which the plugin turns into
    Ctrl-C, or SIGINT itself) so its teardown stops what it started, then SIGKILL after ``grace`` s."""
    if proc.returncode is not None:
        return
    proc.send_signal(how)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()


async def run_child_pytest(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 900.0
) -> tuple[int, str]:
    """``python -m pytest ARGS`` in the repository; its exit code and combined output.

    The child is stopped when it outlives ``timeout`` (the error shows its last
    output) or the calling test is cancelled or fails meanwhile: SIGTERM first,
    which the plugin turns into Ctrl-C so the child's teardown stops what it
    started (registry, broker, emulators), then SIGKILL after
    ``CHILD_STOP_TIMEOUT``.
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
        await stop_child(proc)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return proc.returncode or 0, output.decode(errors="replace")
