"""Board catalog: passive descriptions of boards, loaded from ``boards/*.toml``.

A board file says what a board is (architecture, console UART, prompt, baud
rate, sensors, how to reset and flash it) and which backends can run it; it
never does anything itself. Search path, first match wins: directories in
``$EMBSERVE_HIL_BOARDS`` (``:``-separated), then ``./boards`` of the current
project, then the catalog shipped with embserve-hil.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_BOARDS = Path(__file__).resolve().parent.parent / "boards"
BACKENDS = ("sim", "qemu", "renode", "serial")


class BoardError(ValueError):
    """A board file is missing, unknown or malformed; the message names it."""


@dataclass(frozen=True)
class Board:
    name: str
    arch: str
    backends: tuple[str, ...]
    console: str = "uart0"
    prompt: str = "uart:~$ "
    baudrate: int = 115200
    platform: str = "zephyr/arm/v7"
    sensors: tuple[str, ...] = ("temperature",)
    description: str = ""
    firmware: str | None = None  # default firmware, relative to the repository root
    network: str | None = None  # "lan9118", "slip", "board" (the board's own network)
    qemu_machine: str | None = None
    renode_platform: str | None = None  # .repl for Renode
    reset: str | None = None  # "dtr", "rts" or a shell command
    flash: str | None = None  # shell command with {firmware}
    source: Path | None = field(default=None, compare=False)

    def supports(self, backend: str) -> bool:
        return backend in self.backends


_REQUIRED = {"name": str, "arch": str, "backends": list}
_OPTIONAL = {
    "console": str, "prompt": str, "baudrate": int, "platform": str, "sensors": list,
    "description": str, "firmware": str, "network": str, "qemu_machine": str,
    "renode_platform": str, "reset": str, "flash": str,
}


def search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("EMBSERVE_HIL_BOARDS", "").split(":") if p]
    dirs.append(Path.cwd() / "boards")
    dirs.append(PACKAGE_BOARDS)
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def load_board_file(path: Path) -> Board:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"board file {path}: not valid TOML: {e}") from None
    board = data.get("board", data)
    for key, typ in _REQUIRED.items():
        if key not in board:
            raise BoardError(f"board file {path}: missing field '{key}'")
    for key, value in board.items():
        typ = _REQUIRED.get(key) or _OPTIONAL.get(key)
        if typ is None:
            raise BoardError(f"board file {path}: unknown field '{key}' (known: {', '.join(sorted({**_REQUIRED, **_OPTIONAL}))})")
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise BoardError(f"board file {path}: field '{key}' must be {typ.__name__}, got {type(value).__name__} {value!r}")
    bad = [b for b in board["backends"] if b not in BACKENDS]
    if bad or not board["backends"]:
        raise BoardError(f"board file {path}: field 'backends' has {bad or 'nothing'}; each must be one of {', '.join(BACKENDS)}")
    if board["name"] != path.stem:
        raise BoardError(f"board file {path}: field 'name' is {board['name']!r} but the file is named {path.stem!r}")
    if "baudrate" in board and board["baudrate"] <= 0:
        raise BoardError(f"board file {path}: field 'baudrate' must be positive, got {board['baudrate']}")
    fields = dict(board)
    fields["backends"] = tuple(board["backends"])
    if "sensors" in fields:
        fields["sensors"] = tuple(fields["sensors"])
    return Board(source=path, **fields)


def catalog() -> dict[str, Board]:
    """All boards on the search path; earlier directories win."""
    boards: dict[str, Board] = {}
    for d in search_path():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            if f.stem not in boards:
                boards[f.stem] = load_board_file(f)
    return boards


def get_board(name: str) -> Board:
    boards = catalog()
    if name not in boards:
        known = ", ".join(sorted(boards)) or "none"
        raise BoardError(
            f"unknown board {name!r}; known boards: {known}"
            f" (searched {', '.join(str(d) for d in search_path())})"
        )
    return boards[name]
