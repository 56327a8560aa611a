"""Pack a linked module ELF (see module.ld) into the udynlink format.

* Every ``R_ARM_GOT_BREL`` (a.k.a. ``R_ARM_GOT32``) in ``.text`` becomes a LOT
  entry: the extern by name when the symbol is undefined, else the local
  address the linker stored in the GOT slot (with the Thumb bit for
  functions), as a code or data offset. Entries are deduplicated and the
  literal-pool word is rewritten to the LOT index x 4.
* Every ``R_ARM_ABS32`` in ``.data`` (an initialised pointer) becomes a data
  relocation.
* PC-relative branches and loads inside the code need nothing.
* Anything else cannot be relocated by udynlink and is rejected, naming the
  place and the likely cause.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_RELOC_TYPE_ARM
from elftools.elf.relocation import RelocationSection

from ..service.udlm import Module, Relocation, Symbol, SymbolKind

from .exports import wrapper_symbol

_GOT_BREL = ENUM_RELOC_TYPE_ARM["R_ARM_GOT_BREL"]
_ABS32 = ENUM_RELOC_TYPE_ARM["R_ARM_ABS32"]
_IN_CODE_OK = {
    ENUM_RELOC_TYPE_ARM[name]
    for name in (
        "R_ARM_NONE",
        "R_ARM_V4BX",
        "R_ARM_THM_CALL",
        "R_ARM_THM_JUMP24",
        "R_ARM_THM_JUMP19",
        "R_ARM_THM_JUMP11",
        "R_ARM_THM_JUMP8",
        "R_ARM_THM_PC8",
        "R_ARM_THM_PC12",
        "R_ARM_THM_ALU_PREL_11_0",
    )
}
_RELOC_NAMES = {v: k for k, v in ENUM_RELOC_TYPE_ARM.items() if isinstance(v, int)}
_SHIPPED = {".text", ".data", ".bss"}
_HINTS = {
    "R_ARM_REL32": "PC-relative data reference: compile with -mno-pic-data-is-text-relative",
    "R_ARM_ABS32": "absolute address in code: compile with -fPIE (a switch table or constant pointer?)",
    "R_ARM_GOT_PREL": "compile with -msingle-pic-base -mpic-register=r9",
}


class PackError(ValueError):
    pass


class _Target(NamedTuple):
    """What a LOT entry or data pointer refers to."""

    kind: str  # "extern", "code" or "data"
    value: int | str  # offset, or extern name


def pack_elf(path: Path, module_name: str, exports: list[str]) -> Module:
    with open(path, "rb") as f:
        return _Packer(ELFFile(f), path.name, module_name, exports).module()


class _Packer:
    def __init__(self, elf: ELFFile, label: str, module_name: str, exports: list[str]):
        self.elf = elf
        self.label = label
        self.module_name = module_name
        self.export_names = exports
        self.symtab = elf.get_section_by_name(".symtab")
        if self.symtab is None:
            raise PackError(f"{label}: no symbol table (was the module stripped?)")
        text = self._section(".text", required=True)
        self.code = bytearray(text.data())
        data = self._section(".data")
        bss = self._section(".bss")
        self.data = bytearray(data.data()) if data is not None else bytearray()
        self.data_addr = data["sh_addr"] if data is not None else (bss["sh_addr"] if bss is not None else 0)
        self.bss_size = bss["sh_size"] if bss is not None else 0
        if bss is not None and bss["sh_addr"] != self.data_addr + len(self.data):
            raise PackError(f"{label}: .bss does not follow .data (check the link script)")
        got = self._section(".got")
        self.got_addr = got["sh_addr"] if got is not None else 0
        self.got = got.data() if got is not None else b""
        origin = self._symbol("_GLOBAL_OFFSET_TABLE_")
        self.got_origin = origin["st_value"] if origin is not None else self.got_addr
        self.lot: list[_Target] = []
        self.lot_index: dict[_Target, int] = {}
        self.data_pointers: list[tuple[int, _Target]] = []
        self._check_sections()

    def module(self) -> Module:
        self._relocate_code()
        self._relocate_data()
        symbols = [Symbol(SymbolKind.MODULE_NAME, 0, False, self.module_name)]
        for name in self.export_names:
            wrapper = self._symbol(wrapper_symbol(name))
            if wrapper is None:
                raise PackError(f"{self.label}: export wrapper for {name!r} is missing")
            symbols.append(Symbol(SymbolKind.EXPORTED, wrapper["st_value"], True, name))
        symbol_of: dict[_Target, int] = {}

        def symbol_index(target: _Target) -> int:
            if target not in symbol_of:
                symbol_of[target] = len(symbols)
                if target.kind == "extern":
                    symbols.append(Symbol(SymbolKind.EXTERN, 0, False, str(target.value)))
                else:
                    symbols.append(Symbol(SymbolKind.LOCAL, int(target.value), target.kind == "code"))
            return symbol_of[target]

        relocations = [Relocation(i, symbol_index(t)) for i, t in enumerate(self.lot)]
        relocations += [Relocation(len(self.lot) + word, symbol_index(t)) for word, t in self.data_pointers]
        return Module(
            num_lot=len(self.lot),
            relocations=relocations,
            symbols=symbols,
            code=bytes(self.code),
            data=bytes(self.data),
            bss_size=self.bss_size,
        )

    # -- helpers ---------------------------------------------------------------------

    def _section(self, name: str, required: bool = False):
        section = self.elf.get_section_by_name(name)
        if section is None and required:
            raise PackError(f"{self.label}: no {name} section")
        return section

    def _symbol(self, name: str):
        found = self.symtab.get_symbol_by_name(name)
        return found[0] if found else None

    def _check_sections(self) -> None:
        for section in self.elf.iter_sections():
            flags = section["sh_flags"]
            if flags & 0x2 and section.name not in _SHIPPED | {".got"} and section["sh_size"]:  # SHF_ALLOC
                raise PackError(
                    f"{self.label}: section {section.name} ({section['sh_size']} bytes) "
                    "has no place in a udynlink module"
                )

    def _target(self, address: int, where: str) -> _Target:
        if 0 <= address <= len(self.code):
            return _Target("code", address)
        end = self.data_addr + len(self.data) + self.bss_size
        if self.data_addr <= address <= end:
            return _Target("data", address - self.data_addr)
        raise PackError(f"{self.label}: {where} refers to address {address:#x}, outside code and data")

    def _lot_entry(self, target: _Target) -> int:
        if target not in self.lot_index:
            self.lot_index[target] = len(self.lot)
            self.lot.append(target)
        return self.lot_index[target]

    def _relocations(self, section_name: str) -> list:
        rel = self.elf.get_section_by_name(".rel" + section_name)
        if self.elf.get_section_by_name(".rela" + section_name) is not None:
            raise PackError(f"{self.label}: RELA relocations in {section_name} are not supported")
        return list(rel.iter_relocations()) if isinstance(rel, RelocationSection) else []

    def _reloc_symbol(self, rel):
        return self.symtab.get_symbol(rel["r_info_sym"])

    def _reject(self, rel, section: str) -> PackError:
        name = _RELOC_NAMES.get(rel["r_info_type"], f"type {rel['r_info_type']}")
        sym = self._reloc_symbol(rel).name or "(section)"
        hint = _HINTS.get(name, "only GOT-relative references can be relocated by udynlink")
        return PackError(
            f"{self.label}: relocation {name} against {sym} at {section}+{rel['r_offset']:#x} "
            f"cannot be loaded: {hint}"
        )

    def _relocate_code(self) -> None:
        for rel in self._relocations(".text"):
            kind, offset = rel["r_info_type"], rel["r_offset"]
            sym = self._reloc_symbol(rel)
            undefined = sym["st_shndx"] == "SHN_UNDEF"
            if kind == _GOT_BREL:
                where = f".text+{offset:#x} ({sym.name or 'section symbol'})"
                if undefined:
                    target = _Target("extern", sym.name)
                else:
                    (got_offset,) = struct.unpack_from("<I", self.code, offset)
                    slot = self.got_origin + got_offset - self.got_addr
                    if not 0 <= slot <= len(self.got) - 4:
                        raise PackError(f"{self.label}: {where}: GOT offset {got_offset:#x} is outside .got")
                    target = self._target(struct.unpack_from("<I", self.got, slot)[0], where)
                struct.pack_into("<I", self.code, offset, 4 * self._lot_entry(target))
            elif kind in _IN_CODE_OK:
                if undefined and sym.name:
                    raise PackError(
                        f"{self.label}: direct call to undefined function {sym.name} at .text+{offset:#x}: "
                        "imports must be called through the LOT (compile with -mlong-calls)"
                    )
            else:
                raise self._reject(rel, ".text")

    def _relocate_data(self) -> None:
        for rel in self._relocations(".data"):
            kind, address = rel["r_info_type"], rel["r_offset"]
            if kind != _ABS32:
                raise self._reject(rel, ".data")
            offset = address - self.data_addr
            if offset % 4:
                raise PackError(f"{self.label}: pointer at .data+{offset:#x} is not word aligned")
            sym = self._reloc_symbol(rel)
            if sym["st_shndx"] == "SHN_UNDEF":
                target = _Target("extern", sym.name)
            else:
                (pointer,) = struct.unpack_from("<I", self.data, offset)
                target = self._target(pointer, f".data+{offset:#x}")
            self.data_pointers.append((offset // 4, target))
