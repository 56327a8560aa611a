"""Source locations for code addresses: a service's or a firmware's ELF read with pyelftools.

A service module carries no symbols (udynlink ships code and data only), so
``build-service`` keeps the linked ELF with its DWARF next to ``service.json``
and files a copy in the per-user *symbol store*, named by the sha256 of the
module bytes it packs to (:func:`store_service_elf`). Whoever meets a module
later (the simulator's runtime when it faults, the harness reading a
firmware's fault line, a bundle) finds its ELF by that digest
(:func:`service_elf_for`), whatever registry or path the module came by.

Service code is linked at 0 (``hil/sdk/module.ld``), so an offset into the
loaded code is an address in the ELF; firmware addresses are absolute.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..cache import user_cache_dir

# Above a module's code: the data section's link address in hil/sdk/module.ld.
SERVICE_DATA_BASE = 0x1000_0000


class SymbolsError(RuntimeError):
    """An ELF cannot be read for symbols."""


@dataclass(frozen=True)
class Location:
    """Where an address is in the sources."""

    address: int
    function: str | None
    file: str | None
    line: int | None

    def __str__(self) -> str:
        function = f"{self.function}()" if self.function else f"{self.address:#x}"
        if self.file and self.line:
            return f"{function} at {self.file}:{self.line}"
        return f"{function} (no line information)"


class ElfSymbols:
    """Functions and line table of one ELF; :meth:`locate` maps an address to a :class:`Location`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                elf = ELFFile(f)
                self._functions = _functions(elf)
                self._lines = _line_rows(elf)
                self.build_id = _build_id(elf)
        except (OSError, ELFError) as e:
            raise SymbolsError(f"{self.path}: cannot read symbols: {e}") from None
        self._function_starts = [start for start, _, _ in self._functions]
        self._line_starts = [row[0] for row in self._lines]
        self.has_lines = bool(self._lines)

    def function_address(self, name: str) -> int | None:
        for start, _, fname in self._functions:
            if fname == name:
                return start
        return None

    def locate(self, address: int) -> Location:
        address &= ~1  # Thumb bit
        function = None
        at = bisect.bisect_right(self._function_starts, address) - 1
        if at >= 0:
            start, size, name = self._functions[at]
            if address < start + max(size, 2):
                function = name
        file = line = None
        at = bisect.bisect_right(self._line_starts, address) - 1
        if at >= 0:
            start, end, file_name, line_no = self._lines[at]
            if address < end:
                file, line = file_name, line_no
        return Location(address, function, file, line)


def _functions(elf: ELFFile) -> list[tuple[int, int, str]]:
    symtab = elf.get_section_by_name(".symtab")
    found = []
    for sym in symtab.iter_symbols() if symtab is not None else ():
        if sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] != "SHN_UNDEF" and sym.name:
            found.append((sym["st_value"] & ~1, sym["st_size"], sym.name))
    return sorted(set(found))


def _line_rows(elf: ELFFile) -> list[tuple[int, int, str, int]]:
    """(start, end, file, line) for every address range of the line table, sorted."""
    if not elf.has_dwarf_info():
        return []
    dwarf = elf.get_dwarf_info()
    rows: list[tuple[int, int, str, int]] = []
    for cu in dwarf.iter_CUs():
        program = dwarf.line_program_for_CU(cu)
        if program is None:
            continue
        header = program.header
        names = [entry.name.decode("utf-8", "replace") for entry in header.file_entry]
        base = 1 if header.version < 5 else 0  # DWARF 5 numbers files from 0
        previous = None
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            if previous is not None and state.address > previous.address:
                index = previous.file - base
                name = names[index] if 0 <= index < len(names) else "?"
                rows.append((previous.address, state.address, name, previous.line))
            previous = None if state.end_sequence else state
    rows.sort()
    return rows


def _build_id(elf: ELFFile) -> str | None:
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_NOTE":
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return note["n_desc"]
    return None


def gnu_build_id(path: str | Path) -> str | None:
    """The ELF's GNU build id (hex), or None when it has none."""
    try:
        with open(path, "rb") as f:
            return _build_id(ELFFile(f))
    except (OSError, ELFError):
        return None


@lru_cache(maxsize=64)
def _cached(path: str, mtime_ns: int) -> ElfSymbols:
    return ElfSymbols(path)


def symbols(path: str | Path) -> ElfSymbols:
    """The symbols of the ELF at ``path``, read once per version of the file."""
    path = Path(path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as e:
        raise SymbolsError(f"{path}: cannot read symbols: {e}") from None
    return _cached(str(path.resolve()), stamp)


# -- the symbol store -----------------------------------------------------------------

def module_digest(module: bytes) -> str:
    return hashlib.sha256(module).hexdigest()


def symbol_store() -> Path:
    return user_cache_dir("symbols")


def store_service_elf(module: bytes, elf: Path) -> Path:
    """File ``elf`` as the debug information of ``module`` (atomically); returns where it is."""
    store = symbol_store()
    store.mkdir(parents=True, exist_ok=True)
    target = store / f"{module_digest(module)}.elf"
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    shutil.copyfile(elf, partial)
    os.replace(partial, target)
    return target


def service_elf_for(module: bytes) -> Path | None:
    """The ELF ``module`` was packed from, when this machine built it (or a bundle brought it)."""
    path = symbol_store() / f"{module_digest(module)}.elf"
    return path if path.is_file() else None


def service_symbols_for(module: bytes) -> ElfSymbols | None:
    path = service_elf_for(module)
    if path is None:
        return None
    try:
        return symbols(path)
    except SymbolsError:
        return None
