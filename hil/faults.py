"""Faults a device prints on its console, with the source line they happened at.

:class:`FaultWatcher` listens to one device's console and recognises three
reports, whatever the backend:

* the simulator's ``<err> embserve: service NAME (/9/N) stopped: ...``
  (its runtime has already named the source line, from the service's ELF);
* the reference firmware's ``[NAME] service faulted in setup/loop: ... pc=+0x1c4``
  and the stacked registers after it: the offset is looked up in the ELF of
  the service of that name that was last deployed from this process
  (:func:`note_service`), or built here (the symbol store);
* the firmware's own fatal fault (``*** FATAL HardFault ... ***`` and its
  register dump): PC and LR are looked up in the firmware's ELF.

Each becomes a :class:`DeviceFault`; its source line is written into the
console log as a ``[embserve-hil] fault:`` line, and tests, bundles and
replays read :attr:`FaultWatcher.faults`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .console import Console
from .service import symbols
from .service.symbols import Location, SymbolsError

_SIM_FAULT = re.compile(r"<err> embserve: service (?P<service>\S+) \(/9/(?P<instance>\d+)\) stopped: (?P<message>.*)$")
_SIM_REGISTERS = re.compile(r"<err> embserve:\s+(?P<regs>(?:r\d+|sp|lr|pc|xpsr)=0x.*)$")
_SIM_SOURCE = re.compile(r"; source line: (?:(?P<function>[\w.]+)\(\) )?at (?P<file>\S+):(?P<line>\d+)")
_FW_FAULT = re.compile(r"^\[(?P<service>[^\]]+)\] service faulted in (?P<where>\S+): (?P<message>.*)$")
_FW_OFFSET = re.compile(r"\bpc=\+0x(?P<offset>[0-9a-f]+)")
_FW_SERVICE_REGISTERS = re.compile(r"^\[(?P<service>[^\]]+)\]\s+(?P<regs>(?:r\d+|sp|lr|pc|xpsr)=0x.*)$")
_PROMPT_ONLY = re.compile(r"^(?:\S+:~\$)?\s*$")  # a shell prompt redrawn between log lines
_FATAL = re.compile(r"\*\*\* FATAL (?P<message>.*) in (?:thread|handler) mode \*\*\*")
_REGISTER = re.compile(r"\b(?P<name>r\d+|sp|lr|pc|xpsr|exc_return|cfsr|hfsr|mmfar|bfar)=0x(?P<value>[0-9a-f]+)")
NOTE_PREFIX = "[embserve-hil] fault:"

_known_services: dict[str, bytes] = {}
_symbol_scripts: set[Path] = set()


def note_service(name: str, module: bytes) -> None:
    """Remember which module a service name stands for (the deployer calls this on every deploy)."""
    _known_services[name] = module
    for script in list(_symbol_scripts):
        _write_symbol_script(script)


def gdb_symbol_script(path: Path) -> Path:
    """A GDB script that loads the ELF of the service a firmware has just loaded, kept up to date.

    The reference firmware calls ``rt_debug_service_loaded(name, code, data,
    bss)`` after loading a module; a breakpoint there sources this script,
    which adds the ELF of the service of that name at those addresses.
    """
    _symbol_scripts.add(path)
    _write_symbol_script(path)
    return path


def _write_symbol_script(path: Path) -> None:
    lines = ["# written by embserve-hil: the ELF of each service deployed from it, by name"]
    for name, module in sorted(_known_services.items()):
        elf = symbols.service_elf_for(module)
        if elf is None:
            continue
        lines += [
            f'if $_streq((char *)$r0, "{name}")',
            f'  eval "add-symbol-file {elf} -s .text %#x -s .data %#x -s .bss %#x", $r1, $r2, $r3',
            "end",
        ]
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text("\n".join(lines) + "\n")
        partial.replace(path)
    except OSError:  # its log directory is gone: nobody debugs there any more
        _symbol_scripts.discard(path)


def service_symbols_named(name: str) -> symbols.ElfSymbols | None:
    module = _known_services.get(name)
    return symbols.service_symbols_for(module) if module is not None else None


@dataclass
class DeviceFault:
    """One fault a device reported."""

    endpoint: str
    kind: str  # "service" or "firmware"
    service: str | None  # the service's name; None for the firmware itself
    message: str  # what the device said
    console_line: str
    location: dict | None = None  # function, file, line, address
    registers: dict[str, int] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    @property
    def source(self) -> str | None:
        """``function() at file:line``, when known."""
        if not self.location or not self.location.get("line"):
            return None
        return str(Location(self.location.get("address", 0), self.location.get("function"),
                            self.location.get("file"), self.location.get("line")))

    def signature(self) -> tuple:
        """What makes two reports the same fault, across targets: where, else what."""
        where = self.source
        if where is not None:
            return (self.kind, self.service, Path(self.location["file"]).name, self.location["line"])
        return (self.kind, self.service, _normalise(self.message))

    def describe(self) -> str:
        who = f"service {self.service}" if self.service else "firmware"
        where = self.source or "source line unknown (no ELF with debug information for it)"
        registers = " ".join(f"{k}={v:#010x}" for k, v in self.registers.items())
        message = self.message.split("; source line:")[0]  # the simulator's own note of the line, said above
        return f"{self.endpoint}: {who} fault at {where}: {message}" + (f"\n    registers: {registers}" if registers else "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DeviceFault:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _normalise(message: str) -> str:
    """A message without its addresses (they differ between runs and targets)."""
    return re.sub(r"0x[0-9a-f]+", "0x?", message.split("; source line:")[0])


def _location(loc: Location | None) -> dict | None:
    if loc is None:
        return None
    return {"function": loc.function, "file": loc.file, "line": loc.line, "address": loc.address}


def _registers(text: str) -> dict[str, int]:
    return {m["name"]: int(m["value"], 16) for m in _REGISTER.finditer(text)}


class FaultWatcher:
    """Recognises fault reports on one console; see the module docs."""

    def __init__(self, endpoint: str, console: Console, firmware: Callable[[], Path | None] = lambda: None):
        self.endpoint = endpoint
        self.console = console
        self.firmware = firmware
        self.faults: list[DeviceFault] = []
        self.listeners: list[Callable[[DeviceFault], None]] = []
        self._fatal: DeviceFault | None = None
        self._awaiting_registers: DeviceFault | None = None
        console.listeners.append(self.feed)

    def feed(self, line: str) -> None:
        try:
            self._feed(line.strip())
        except Exception as e:  # noqa: BLE001 - a symbolization problem must not break the console
            self.console.note(f"[embserve-hil] could not symbolize a fault: {type(e).__name__}: {e}")

    def _feed(self, line: str) -> None:
        if self._fatal is not None:
            self._fatal_line(line)
            return
        if (m := _SIM_FAULT.search(line)) is not None:
            source = _SIM_SOURCE.search(m["message"])
            location = None
            if source is not None:
                location = {"function": source["function"], "file": source["file"], "line": int(source["line"]), "address": 0}
            self._found(DeviceFault(self.endpoint, "service", m["service"], m["message"], line, location), registers=True)
        elif (m := _FW_FAULT.search(line)) is not None:
            offset = _FW_OFFSET.search(m["message"])
            location = None
            elf = service_symbols_named(m["service"])
            if offset is not None and elf is not None:
                location = _location(elf.locate(int(offset["offset"], 16)))
            self._found(DeviceFault(self.endpoint, "service", m["service"], m["message"], line, location), registers=True)
        elif (m := _FATAL.search(line)) is not None:
            self._fatal = DeviceFault(self.endpoint, "firmware", None, m["message"], line)
        elif self._awaiting_registers is not None and not _PROMPT_ONLY.match(line):
            regs = _SIM_REGISTERS.search(line) or _FW_SERVICE_REGISTERS.search(line)
            fault = self._awaiting_registers
            if regs is None:
                self._awaiting_registers = None
                return
            fault.registers.update(_registers(regs["regs"]))
            if "pc" in fault.registers and "xpsr" in fault.registers:
                self._awaiting_registers = None

    def _fatal_line(self, line: str) -> None:
        fault = self._fatal
        assert fault is not None
        fault.registers.update(_registers(line))
        if line.startswith("resetting") or ("bfar" in fault.registers):
            self._fatal = None
            firmware = self.firmware()
            if firmware is not None and "pc" in fault.registers:
                try:
                    elf = symbols.symbols(firmware)
                except SymbolsError:
                    elf = None
                if elf is not None:
                    fault.location = _location(elf.locate(fault.registers["pc"]))
                    if "lr" in fault.registers:
                        caller = elf.locate(fault.registers["lr"])
                        fault.message += f" (called from {caller})"
            self._found(fault, registers=False)

    def _found(self, fault: DeviceFault, registers: bool) -> None:
        self.faults.append(fault)
        self._awaiting_registers = fault if registers else None
        where = fault.source or "source line unknown (no ELF with debug information)"
        who = f"service {fault.service}" if fault.service else "firmware"
        self.console.note(f"{NOTE_PREFIX} {who} at {where}")
        for listener in self.listeners:
            listener(fault)
