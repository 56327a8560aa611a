"""The reference embServe firmware, built from the sources that ship in the package.

:func:`reference_firmware` returns the ELF of the reference firmware for
one board (``firmware/src/boards/<board>/``: :func:`firmware_boards`),
built with the shipped Makefile (``make BOARD=<board> NET=<net>``) into the
per-user cache, ``$XDG_CACHE_HOME/embserve-hil/firmware/<key>/embserve.elf``,
where the key hashes what that build reads (the Makefile, the link scripts,
the common sources and that board's directory), the make variables and the
compiler's version. The first use builds (about 15 s on two cores), later
ones reuse; ``announce`` is told which, in one line.

A cache entry only ever appears whole: the build runs in a ``.building-*``
directory beside it, which gets a manifest (the key and the ELF's SHA-256)
and is then renamed into place. An entry whose manifest is missing or does
not match its ELF (a half-written entry) is removed and built again, never
used; a ``.building-*`` directory left by a build that was killed is removed
by the next build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from . import resources
from .cache import user_cache_dir

CROSS = "arm-none-eabi-"
ELF_NAME = "embserve.elf"
MANIFEST_NAME = "entry.json"
NET_MODES = ("eth", "slip")
#: what a build needs from Debian, named together in the error when any part is missing
APT_PACKAGES = ("gcc-arm-none-eabi", "picolibc-arm-none-eabi", "libnewlib-arm-none-eabi")
BUILD_TIMEOUT = 600.0
#: the board a build is for when nobody says: QEMU's mps2-an385
DEFAULT_BOARD = "mps2_an385"
_SOURCE_SUFFIXES = (".c", ".h", ".S", ".ld", ".mk")
_KEEP = (ELF_NAME, "embserve.map")  # what an entry keeps of the build directory


class FirmwareError(RuntimeError):
    """The reference firmware cannot be built; the message says why in one line (or gives the build's output)."""


def cache_root() -> Path:
    return user_cache_dir("firmware")


def firmware_boards(src: Path) -> list[str]:
    """The boards the reference firmware's sources in ``src`` build for (``src/boards/<board>/``)."""
    return sorted(p.name for p in (src / "src" / "boards").iterdir() if (p / "board.mk").is_file())


def source_files(src: Path, board: str = DEFAULT_BOARD) -> list[Path]:
    """What the build for ``board`` reads: the Makefile, the top-level link scripts, every source under
    ``src/`` outside ``src/boards/``, and everything of ``src/boards/<board>/`` (its link script too)."""
    boards = src / "src" / "boards"
    files = [src / "Makefile", *sorted(src.glob("*.ld"))]
    files += sorted(
        p for p in (src / "src").rglob("*")
        if p.suffix in _SOURCE_SUFFIXES and p.is_file()
        and (not p.is_relative_to(boards) or p.is_relative_to(boards / board))
    )
    return files


def _install_hint() -> str:
    packages = " ".join(APT_PACKAGES)
    return f"install the Debian packages {packages} (apt-get install {packages})"


def check_toolchain(cross: str = CROSS) -> str:
    """The compiler's version line; FirmwareError naming the Debian packages when a part is missing."""
    if shutil.which("make") is None:
        raise FirmwareError("cannot build the reference firmware: make is not installed (apt-get install make)")
    gcc = shutil.which(f"{cross}gcc")
    if gcc is None:
        raise FirmwareError(f"cannot build the reference firmware: {cross}gcc is not installed; {_install_hint()}")
    specs = subprocess.run([gcc, "-print-file-name=picolibc.specs"], capture_output=True, text=True, check=False)
    if not os.path.isabs(specs.stdout.strip()):
        raise FirmwareError(f"cannot build the reference firmware: picolibc for {cross}gcc is missing; {_install_hint()}")
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False)
    return version.stdout.splitlines()[0] if version.stdout else gcc


def build_key(src: Path, make_vars: dict[str, str], compiler: str) -> str:
    """The cache key of one build: the compiler, the make variables (``BOARD`` picks the board's
    sources) and every file that build reads."""
    digest = hashlib.sha256(compiler.encode() + b"\0")
    for name in sorted(make_vars):
        digest.update(f"{name}={make_vars[name]}\0".encode())
    for path in source_files(src, make_vars.get("BOARD", DEFAULT_BOARD)):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry_is_complete(entry: Path, key: str) -> bool:
    """True when ``entry`` holds a finished build for ``key``: its manifest names the key and the ELF's hash."""
    try:
        manifest = json.loads((entry / MANIFEST_NAME).read_text())
        return manifest.get("key") == key and manifest.get("sha256") == _sha256(entry / ELF_NAME)
    except (OSError, ValueError, AttributeError):
        return False


def _remove(path: Path) -> None:
    # Renamed first, so a half-removed directory is never mistaken for an entry.
    doomed = path.with_name(f".removing-{path.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def _remove_abandoned_builds(root: Path) -> None:
    """``.building-*`` directories whose builder process is gone (killed mid-build), and stray removals."""
    for leftover in root.glob(".removing-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for building in root.glob(".building-*"):
        try:
            pid = int(building.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(building, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue  # not ours to judge


def _make(src: Path, build: Path, make_vars: dict[str, str], timeout: float) -> None:
    command = ["make", "-s", "-C", str(src), f"BUILD={build}", f"-j{os.cpu_count() or 2}"]
    command += [f"{name}={value}" for name, value in sorted(make_vars.items())]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"building the reference firmware took more than {timeout:g} s: {' '.join(command)}") from None
    if run.returncode != 0 or not (build / ELF_NAME).is_file():
        output = (run.stderr.strip() or run.stdout.strip())[-3000:]
        raise FirmwareError(f"building the reference firmware failed (exit {run.returncode}): {' '.join(command)}\n{output}")


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def reference_firmware(
    net: str = "eth",
    *,
    board: str = DEFAULT_BOARD,
    cache_dir: str | os.PathLike[str] | None = None,
    src: str | os.PathLike[str] | None = None,
    announce: Callable[[str], None] = _stderr_line,
    timeout: float = BUILD_TIMEOUT,
) -> Path:
    """The reference firmware's ELF for ``board`` and ``net`` (the interface up after boot), built on first use.

    ``src`` defaults to the sources shipped in the package, ``cache_dir`` to
    :func:`cache_root`.
    """
    if net not in NET_MODES:
        raise FirmwareError(f"net={net!r}: the reference firmware is built for {' or '.join(NET_MODES)}")
    src = Path(src) if src is not None else resources.firmware_dir()
    known = firmware_boards(src)
    if board not in known:
        raise FirmwareError(f"board {board!r}: the reference firmware is built for {', '.join(known)}, not for it")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    make_vars = {"BOARD": board, "NET": net, "CROSS": CROSS}
    what = f"BOARD={board} NET={net}"
    key = build_key(src, make_vars, check_toolchain())
    entry = root / key
    if entry_is_complete(entry, key):
        announce(f"embserve-hil: reusing the reference firmware ({what}) {entry / ELF_NAME}")
        return entry / ELF_NAME
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(root)
    if entry.exists():
        announce(f"embserve-hil: {entry} is an incomplete build; removing it")
        _remove(entry)
    announce(f"embserve-hil: building the reference firmware ({what}) into {entry} ...")
    building = root / f".building-{os.getpid()}-{key}-{uuid.uuid4().hex[:8]}"
    try:
        _make(src, building, make_vars, timeout)
        for item in building.iterdir():
            if item.name not in _KEEP:
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        manifest = {"key": key, "board": board, "net": net, "sha256": _sha256(building / ELF_NAME), "sources": str(src)}
        with open(building / MANIFEST_NAME, "w") as out:
            json.dump(manifest, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        try:
            building.rename(entry)
        except OSError:
            if not entry_is_complete(entry, key):  # not another process that finished first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    announce(f"embserve-hil: built {entry / ELF_NAME}")
    return entry / ELF_NAME
