"""Board catalog: passive descriptions of boards, loaded from ``boards/*.toml``.

A board file says what a board is (architecture, console UART, prompt, baud
rate, sensors, how to reset and flash it, which Renode platform models it)
and which backends can run it; it never does anything itself. Search path,
first match wins: directories in ``$EMBSERVE_HIL_BOARDS`` (``:``-separated),
then ``./boards`` of the current project, then the catalog shipped with
embserve-hil (:func:`hil.resources.boards_dir`). The fields are documented
in ``docs/boards.md``.
"""

from __future__ import annotations

import os
import string
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import resources

#: the ``firmware`` field's value for the embServe reference firmware, built
#: from the sources shipped with embserve-hil (:mod:`hil.reference_firmware`)
REFERENCE_FIRMWARE = "reference"
BACKENDS = ("sim", "qemu", "renode", "serial")
RESETS = ("none", "dtr", "rts", "command")
#: placeholders a command field may use, filled in by the serial target
COMMAND_PLACEHOLDERS = {
    "reset_command": ("port", "board"),
    "flash": ("firmware", "port", "board"),
    "labgrid_flash_command": ("firmware", "port", "board", "place", "host"),
}
#: how a service input is written: the device shell, a writable LwM2M resource the
#: manifest maps the input to, or not at all (production firmware with neither)
SERVICE_INPUTS = ("shell", "lwm2m", "none")
#: the reference firmware's (and the simulator's) shell command for a service input [ours]
DEFAULT_SERVICE_INPUT_COMMAND = "embserve service input {instance} {key} {value}"
SERVICE_INPUT_PLACEHOLDERS = ("instance", "key", "value")
#: placeholders of a ``stimulus.<sensor>`` command, run in a shell on the host
STIMULUS_PLACEHOLDERS = ("value", "sensor", "board")
#: ``labgrid_flash`` names a labgrid driver class (``OpenOCDDriver``...) or this
LABGRID_FLASH_COMMAND = "command"


class BoardError(ValueError):
    """A board file is missing, unknown or malformed; the message names it."""

    path: Path | None = None  # the offending board file, when there is one


@dataclass(frozen=True)
class Board:
    name: str
    arch: str
    backends: tuple[str, ...]
    console: str = "uart0"  # console UART; for Renode the peripheral name (``sysbus.`` is implied)
    prompt: str = "uart:~$ "
    baudrate: int = 115200
    platform: str = "zephyr/arm/v7"
    sensors: tuple[str, ...] = ("temperature",)
    description: str = ""
    firmware: str | None = None  # default firmware: a path (see resolve_path()) or REFERENCE_FIRMWARE
    network: str | None = None  # "lan9118", "ethernet", "slip", "board" (the board's own network)
    qemu_machine: str | None = None
    renode_platform: str | None = None  # .repl: a path, or "@platforms/..." inside Renode
    renode_script: str | None = None  # .resc that starts the board by hand in Renode
    renode_ethernet: str | None = None  # Renode peripheral with an Ethernet model, e.g. "sysbus.ethernet"
    renode_slip_uart: str | None = None  # Renode UART carrying the node's SLIP link, e.g. "uart1" (``sysbus.`` implied)
    reset: str = "none"  # "none", "dtr", "rts" (pulse the modem line) or "command"
    reset_command: str | None = None  # shell command; {port}, {board}
    reset_pulse: float = 0.1  # seconds the DTR/RTS line is held active
    flash: str | None = None  # shell command; {firmware}, {port}, {board}
    flash_timeout: float = 120.0
    boot_timeout: float = 10.0  # seconds from reset to the shell prompt
    # -- capabilities: what a test may do to the node (docs/boards.md, "Capabilities")
    inject: tuple[str, ...] | None = None  # sensors `sensor set` takes; None: the target's default (capabilities())
    service_input: str | None = None  # one of SERVICE_INPUTS; None: the target's default
    service_input_command: str = DEFAULT_SERVICE_INPUT_COMMAND  # device shell command; {instance}, {key}, {value}
    temperature_range: tuple[float, float] = (-40.0, 85.0)  # plausible readings of the real sensor, °C
    constant_sensors: tuple[str, ...] = ()  # sensors whose readings may all be identical (no noise, no drift)
    stimulus: dict[str, str] = field(default_factory=dict, hash=False)  # sensor -> host command; {value}, {sensor}, {board}
    stimulus_settle: float = 0.0  # seconds after a stimulus command before the sensor shows the value
    stimulus_tolerance: float = 0.01  # how far a reading may be from the stimulus value

    # On a labgrid place (target "labgrid"): flash through the place with a labgrid driver that loads
    # firmware (e.g. "OpenOCDDriver", with labgrid_flash_options as its attributes), or "command".
    labgrid_flash: str | None = None
    labgrid_flash_command: str | None = None  # shell command; {firmware}, {port}, {board}, {place}, {host}
    labgrid_flash_options: dict[str, Any] = field(default_factory=dict, compare=False)
    source: Path | None = field(default=None, compare=False)

    def supports(self, backend: str) -> bool:
        return backend in self.backends

    def resolve_path(self, value: str) -> Path:
        """A path named in this board file, made absolute.

        Relative paths are looked up next to the board file, then one level
        up (so ``boards/x.toml`` can name ``renode/x.repl`` or
        ``firmware/build/x.elf`` of the same project).
        """
        candidates = self._candidates(value)
        return next((c for c in candidates if c.exists()), candidates[-1])

    def _candidates(self, value: str) -> list[Path]:
        path = Path(value).expanduser()
        if path.is_absolute() or self.source is None:
            return [path.resolve()]
        here = self.source.resolve().parent
        return [here / path, here.parent / path]

    def existing_file(self, key: str) -> Path:
        """The file that the path field ``key`` names; a :class:`BoardError` naming the board file and the field when there is none."""
        value = getattr(self, key)
        where = f"board file {self.source}" if self.source else f"board {self.name}"
        if not value:
            raise BoardError(f"{where}: field '{key}' is not set")
        candidates = self._candidates(value)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            looked = " or ".join(str(c) for c in candidates)
            raise BoardError(f"{where}: field '{key}' names {value!r}, which does not exist (looked for {looked})")
        return found

    @property
    def uses_reference_firmware(self) -> bool:
        return self.firmware == REFERENCE_FIRMWARE

    @property
    def renode_console(self) -> str:
        return self.console if "." in self.console else f"sysbus.{self.console}"

    def capabilities(self, reference_shell: bool) -> Capabilities:
        """What a test may do to this board's node, with the target's defaults for fields the file leaves out.

        ``reference_shell``: the target's firmware takes the reference
        firmware's shell commands (``sensor set``, ``embserve service
        input``) unless the board file says otherwise: the simulator, QEMU
        and Renode do; a board on a serial port runs whatever was flashed.
        """
        inject = self.inject if self.inject is not None else (self.sensors if reference_shell else ())
        service_input = self.service_input or ("shell" if reference_shell else "none")
        return Capabilities(frozenset(inject), service_input, self.service_input_command, dict(self.stimulus))


@dataclass(frozen=True)
class Capabilities:
    """A board's capabilities on one target: what the harness may do to the node."""

    inject: frozenset[str]  # sensors the firmware's `sensor set` takes
    service_input: str  # one of SERVICE_INPUTS
    service_input_command: str  # device shell command template, for service_input "shell"
    stimulus: dict[str, str] = field(default_factory=dict, hash=False)  # sensor -> host command template

    def can_set(self, sensor: str) -> bool:
        """A test can put a value on the sensor: by a stimulus, or by injecting it."""
        return sensor in self.stimulus or sensor in self.inject


_REQUIRED: dict[str, type | tuple[type, ...]] = {"name": str, "arch": str, "backends": list}
_NUMBER = (int, float)
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "console": str, "prompt": str, "baudrate": int, "platform": str, "sensors": list,
    "description": str, "firmware": str, "network": str, "qemu_machine": str,
    "renode_platform": str, "renode_script": str, "renode_ethernet": str, "renode_slip_uart": str,
    "reset": str, "reset_command": str, "reset_pulse": _NUMBER, "flash": str,
    "flash_timeout": _NUMBER, "boot_timeout": _NUMBER,
    "inject": list, "service_input": str, "service_input_command": str, "temperature_range": list,
    "constant_sensors": list, "stimulus": dict, "stimulus_settle": _NUMBER, "stimulus_tolerance": _NUMBER,
    "labgrid_flash": str, "labgrid_flash_command": str, "labgrid_flash_options": dict,
}
assert set(_REQUIRED) | set(_OPTIONAL) == {f.name for f in fields(Board)} - {"source"}


def _type_name(typ: type | tuple[type, ...]) -> str:
    return "number" if typ == _NUMBER else typ.__name__  # type: ignore[union-attr]


def search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("EMBSERVE_HIL_BOARDS", "").split(":") if p]
    dirs.append(Path.cwd() / "boards")
    dirs.append(resources.boards_dir())
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def _check_command(path: Path, key: str, command: str, allowed: tuple[str, ...] | None = None) -> None:
    allowed = allowed if allowed is not None else COMMAND_PLACEHOLDERS[key]
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(command) if name is not None]
    except ValueError as e:
        raise BoardError(f"board file {path}: field '{key}' is not a valid command template: {e}") from None
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise BoardError(
            f"board file {path}: field '{key}' uses unknown placeholder {{{unknown[0]}}};"
            f" known: {', '.join('{' + a + '}' for a in allowed)}"
        )
    if not command.strip():
        raise BoardError(f"board file {path}: field '{key}' is empty")


def _check(path: Path, board: dict[str, Any]) -> None:
    for key in _REQUIRED:
        if key not in board:
            raise BoardError(f"board file {path}: missing field '{key}'")
    known = {**_REQUIRED, **_OPTIONAL}
    for key, value in board.items():
        typ = known.get(key)
        if typ is None:
            raise BoardError(f"board file {path}: unknown field '{key}' (known: {', '.join(sorted(known))})")
        if not isinstance(value, typ) or isinstance(value, bool):
            raise BoardError(
                f"board file {path}: field '{key}' must be {_type_name(typ)}, got {type(value).__name__} {value!r}"
            )
    for key in ("backends", "sensors"):
        bad = [v for v in board.get(key, []) if not isinstance(v, str)]
        if bad:
            raise BoardError(f"board file {path}: field '{key}' must list strings, got {bad[0]!r}")
    bad = [b for b in board["backends"] if b not in BACKENDS]
    if bad or not board["backends"]:
        raise BoardError(f"board file {path}: field 'backends' has {bad or 'nothing'}; each must be one of {', '.join(BACKENDS)}")
    if board["name"] != path.stem:
        raise BoardError(f"board file {path}: field 'name' is {board['name']!r} but the file is named {path.stem!r}")
    for key in ("name", "arch"):
        if not board[key].strip():
            raise BoardError(f"board file {path}: field '{key}' is empty")
    for key in ("baudrate", "reset_pulse", "flash_timeout", "boot_timeout"):
        if key in board and board[key] <= 0:
            raise BoardError(f"board file {path}: field '{key}' must be positive, got {board[key]}")
    if "reset" in board and board["reset"] not in RESETS:
        raise BoardError(
            f"board file {path}: field 'reset' is {board['reset']!r}; must be one of {', '.join(RESETS)}"
            " (a shell command goes in 'reset_command')"
        )
    if board.get("reset") == "command" and "reset_command" not in board:
        raise BoardError(f"board file {path}: field 'reset' is 'command' but field 'reset_command' is missing")
    for key in COMMAND_PLACEHOLDERS:
        if key in board:
            _check_command(path, key, board[key])
    if board.get("labgrid_flash") == LABGRID_FLASH_COMMAND and "labgrid_flash_command" not in board:
        raise BoardError(f"board file {path}: field 'labgrid_flash' is 'command' but field 'labgrid_flash_command' is missing")
    if "labgrid_flash" in board and not board["labgrid_flash"].strip():
        raise BoardError(f"board file {path}: field 'labgrid_flash' is empty; name a labgrid driver (e.g. OpenOCDDriver)"
                         f" or 'command'")
    if "prompt" in board and not board["prompt"].strip():
        raise BoardError(f"board file {path}: field 'prompt' is empty; the shell prompt is how boot is detected")
    _check_capabilities(path, board)


def _check_capabilities(path: Path, board: dict[str, Any]) -> None:
    sensors = board.get("sensors", list(Board.sensors))
    for key in ("inject", "constant_sensors"):
        for name in board.get(key, []):
            if not isinstance(name, str):
                raise BoardError(f"board file {path}: field '{key}' must list sensor names, got {name!r}")
            if name not in sensors:
                raise BoardError(f"board file {path}: field '{key}' names {name!r}, which is not one of the board's"
                                 f" sensors ({', '.join(sensors) or 'none'}: field 'sensors')")
    if "service_input" in board and board["service_input"] not in SERVICE_INPUTS:
        raise BoardError(f"board file {path}: field 'service_input' is {board['service_input']!r};"
                         f" must be one of {', '.join(SERVICE_INPUTS)} (a shell command goes in 'service_input_command')")
    if "service_input_command" in board:
        _check_command(path, "service_input_command", board["service_input_command"], SERVICE_INPUT_PLACEHOLDERS)
    if "temperature_range" in board:
        bounds = board["temperature_range"]
        if (len(bounds) != 2 or not all(isinstance(b, _NUMBER) and not isinstance(b, bool) for b in bounds)
                or bounds[0] >= bounds[1]):
            raise BoardError(f"board file {path}: field 'temperature_range' must be [low, high] in °C with"
                             f" low < high, got {bounds!r}")
    for name, command in board.get("stimulus", {}).items():
        key = f"stimulus.{name}"
        if name not in sensors:
            raise BoardError(f"board file {path}: field '{key}' is for {name!r}, which is not one of the board's"
                             f" sensors ({', '.join(sensors) or 'none'}: field 'sensors')")
        if not isinstance(command, str):
            raise BoardError(f"board file {path}: field '{key}' must be a command (string), got"
                             f" {type(command).__name__} {command!r}")
        _check_command(path, key, command, STIMULUS_PLACEHOLDERS)
    for key in ("stimulus_settle", "stimulus_tolerance"):
        if key in board and board[key] < 0:
            raise BoardError(f"board file {path}: field '{key}' must not be negative, got {board[key]}")


def load_board_file(path: Path) -> Board:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"board file {path}: not valid TOML: {e}") from None
    except OSError as e:
        raise BoardError(f"board file {path}: cannot be read: {e.strerror}") from None
    board = data.get("board", data)
    if not isinstance(board, dict):
        raise BoardError(f"board file {path}: [board] must be a table")
    _check(path, board)
    values = dict(board)
    values["backends"] = tuple(board["backends"])
    for key in ("sensors", "inject", "constant_sensors"):
        if key in values:
            values[key] = tuple(values[key])
    if "temperature_range" in values:
        values["temperature_range"] = tuple(float(b) for b in values["temperature_range"])
    for key in ("reset_pulse", "flash_timeout", "boot_timeout", "stimulus_settle", "stimulus_tolerance"):
        if key in values:
            values[key] = float(values[key])
    if "reset_command" in values and "reset" not in values:
        values["reset"] = "command"
    if "labgrid_flash_command" in values and "labgrid_flash" not in values:
        values["labgrid_flash"] = LABGRID_FLASH_COMMAND
    return Board(source=path, **values)


def catalog(errors: list[BoardError] | None = None) -> dict[str, Board]:
    """All boards on the search path; earlier directories win.

    A malformed board file raises :class:`BoardError`, unless ``errors`` is
    given: then it is collected there and the other boards are still listed.
    """
    boards: dict[str, Board] = {}
    for d in search_path():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            if f.stem in boards:
                continue
            try:
                boards[f.stem] = load_board_file(f)
            except BoardError as e:
                if errors is None:
                    raise
                e.path = f
                errors.append(e)
    return boards


def get_board(name: str) -> Board:
    # A broken file elsewhere on the path must not hide the board asked for.
    problems: list[BoardError] = []
    boards = catalog(problems)
    if name not in boards:
        broken = [str(p) for p in problems if p.path is not None and p.path.stem == name]
        if broken:
            raise BoardError(broken[0])
        known = ", ".join(sorted(boards)) or "none"
        raise BoardError(
            f"unknown board {name!r}; known boards: {known}"
            f" (searched {', '.join(str(d) for d in search_path())})"
        )
    return boards[name]
