"""The udynlink module format (``UDLM``): parse and write.

A module is, little endian::

    header (24 bytes)   "UDLM", u16 num_lot, u16 num_rels, u32 symt_size,
                        u32 code_size, u32 data_size, u32 bss_size
    relocations         num_rels x (u32 slot, u32 symbol index)
    symbol table        symt_size bytes: u32 count, count x (u32 name|info<<28,
                        u32 value), then the NUL-terminated names
    code                code_size bytes (Thumb; literal pools hold LOT index x 4)
    data                data_size bytes

Name offsets count from the start of the symbol table. Symbol info bits 0-1
give the kind (:class:`SymbolKind`), bit 2 says the value is a code offset
(else a data/bss offset). Symbol 0 names the module.

A relocation fills one word with the symbol's final address: the LOT entry
``slot`` when ``slot < num_lot``, else data word ``slot - num_lot`` (an
initialised pointer in ``.data``). Local and exported values get the code or
data base added; externs are resolved by name. Code symbol values already
carry the Thumb bit where they are functions.

At run time the module needs ``num_lot * 4 + data_size + bss_size`` bytes of
RAM: the LOT, then data, then bss.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

MAGIC = b"UDLM"
HEADER = struct.Struct("<4sHHIIII")
_PAIR = struct.Struct("<II")
_NAME_MASK = 0x0FFFFFFF
_INFO_SHIFT = 28
_IN_CODE = 0x4


class ModuleFormatError(ValueError):
    """A malformed module; the message names the byte offset and what is wrong."""

    def __init__(self, message: str, offset: int | None = None):
        if offset is not None:
            message = f"at offset {offset:#x}: {message}"
        super().__init__(message)
        self.offset = offset


class SymbolKind(enum.IntEnum):
    LOCAL = 0
    EXPORTED = 1
    EXTERN = 2
    MODULE_NAME = 3


@dataclass(frozen=True)
class Symbol:
    kind: SymbolKind
    value: int
    in_code: bool = False
    name: str = ""  # locals have no name

    @property
    def info(self) -> int:
        return int(self.kind) | (_IN_CODE if self.in_code else 0)


@dataclass(frozen=True)
class Relocation:
    slot: int  # LOT index, or num_lot + data word index
    symbol: int  # index into the symbol table


@dataclass
class Module:
    num_lot: int
    relocations: list[Relocation]
    symbols: list[Symbol]
    code: bytes
    data: bytes = b""
    bss_size: int = 0
    _symt_size: int | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.symbols[0].name if self.symbols else ""

    @property
    def exports(self) -> dict[str, int]:
        """Exported name -> code offset (with the Thumb bit for functions)."""
        return {s.name: s.value for s in self.symbols if s.kind is SymbolKind.EXPORTED}

    @property
    def imports(self) -> list[str]:
        """Names of extern symbols, in table order, without duplicates."""
        seen: dict[str, None] = {}
        for s in self.symbols:
            if s.kind is SymbolKind.EXTERN:
                seen.setdefault(s.name)
        return list(seen)

    @property
    def lot_size(self) -> int:
        return self.num_lot * 4

    @property
    def ram_size(self) -> int:
        """RAM the loaded module needs: LOT + data + bss."""
        return self.lot_size + len(self.data) + self.bss_size

    @property
    def data_relocations(self) -> list[Relocation]:
        return [r for r in self.relocations if r.slot >= self.num_lot]

    def pack(self) -> bytes:
        symtab = _pack_symbols(self.symbols)
        header = HEADER.pack(
            MAGIC, self.num_lot, len(self.relocations), len(symtab), len(self.code), len(self.data), self.bss_size
        )
        rels = b"".join(_PAIR.pack(r.slot, r.symbol) for r in self.relocations)
        return header + rels + symtab + self.code + self.data


def _pack_symbols(symbols: list[Symbol]) -> bytes:
    names = bytearray()
    strings_at = 4 + 8 * len(symbols)
    offsets: dict[str, int] = {}
    entries = bytearray(struct.pack("<I", len(symbols)))
    for sym in symbols:
        offset = 0
        if sym.kind is not SymbolKind.LOCAL:
            if sym.name not in offsets:
                offsets[sym.name] = strings_at + len(names)
                names += sym.name.encode("ascii") + b"\0"
            offset = offsets[sym.name]
        entries += _PAIR.pack(offset | (sym.info << _INFO_SHIFT), sym.value)
    names += b"\0" * (-len(names) % 4)  # keeps the code 4-byte aligned
    return bytes(entries + names)


def parse_module(blob: bytes) -> Module:
    """Parse and check a module; raises :class:`ModuleFormatError` naming the offset."""
    blob = bytes(blob)
    if len(blob) < HEADER.size:
        raise ModuleFormatError(f"module is {len(blob)} bytes, shorter than the {HEADER.size}-byte header", 0)
    magic, num_lot, num_rels, symt_size, code_size, data_size, bss_size = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ModuleFormatError(f"bad magic {magic!r}, expected {MAGIC!r}", 0)
    rels_at = HEADER.size
    symt_at = rels_at + 8 * num_rels
    code_at = symt_at + symt_size
    data_at = code_at + code_size
    end = data_at + data_size
    if end != len(blob):
        what = "truncated" if end > len(blob) else "trailing bytes"
        raise ModuleFormatError(
            f"header sizes (num_rels {num_rels}, symt_size {symt_size}, code_size {code_size}, "
            f"data_size {data_size}) add up to {end} bytes but the module is {len(blob)} bytes ({what})",
            4,
        )
    symbols = _parse_symbols(blob, symt_at, symt_size, code_size, data_size + bss_size)
    data_words = data_size // 4
    relocations = []
    for i in range(num_rels):
        at = rels_at + 8 * i
        slot, sym_index = _PAIR.unpack_from(blob, at)
        if slot >= num_lot + data_words:
            raise ModuleFormatError(
                f"relocation {i}: slot {slot} is out of range (LOT has {num_lot} entries, data {data_words} words)", at
            )
        if sym_index >= len(symbols):
            raise ModuleFormatError(
                f"relocation {i}: symbol index {sym_index} is out of range (symbol table has {len(symbols)} entries)",
                at + 4,
            )
        if symbols[sym_index].kind is SymbolKind.MODULE_NAME:
            raise ModuleFormatError(f"relocation {i}: refers to the module name symbol {sym_index}", at + 4)
        relocations.append(Relocation(slot, sym_index))
    return Module(
        num_lot=num_lot,
        relocations=relocations,
        symbols=symbols,
        code=blob[code_at:data_at],
        data=blob[data_at:end],
        bss_size=bss_size,
        _symt_size=symt_size,
    )


def _parse_symbols(blob: bytes, at: int, size: int, code_size: int, ram_data_size: int) -> list[Symbol]:
    if size < 4:
        raise ModuleFormatError(f"symbol table is {size} bytes, too small for its entry count", 8)
    (count,) = struct.unpack_from("<I", blob, at)
    strings_at = 4 + 8 * count
    if strings_at > size:
        raise ModuleFormatError(f"symbol table claims {count} entries ({strings_at} bytes) but is {size} bytes", at)
    if count == 0:
        raise ModuleFormatError("symbol table is empty: symbol 0 must name the module", at)
    table = blob[at : at + size]
    symbols = []
    exported: set[str] = set()
    for i in range(count):
        entry_at = at + 4 + 8 * i
        word, value = _PAIR.unpack_from(blob, entry_at)
        info = word >> _INFO_SHIFT
        kind = SymbolKind(info & 0x3)
        in_code = bool(info & _IN_CODE)
        name = ""
        if kind is not SymbolKind.LOCAL:
            offset = word & _NAME_MASK
            if not strings_at <= offset < size:
                raise ModuleFormatError(
                    f"symbol {i}: name offset {offset} is outside the string area [{strings_at}, {size})", entry_at
                )
            nul = table.find(b"\0", offset)
            if nul < 0:
                raise ModuleFormatError(f"symbol {i}: name at offset {offset} has no terminating NUL", entry_at)
            try:
                name = table[offset:nul].decode("ascii")
            except UnicodeDecodeError:
                raise ModuleFormatError(f"symbol {i}: name at offset {offset} is not ASCII", entry_at) from None
            if not name:
                raise ModuleFormatError(f"symbol {i}: empty name", entry_at)
        if (i == 0) != (kind is SymbolKind.MODULE_NAME):
            problem = "must be the module name" if i == 0 else f"is a second module name {name!r}"
            raise ModuleFormatError(f"symbol {i} {problem}", entry_at)
        if kind in (SymbolKind.LOCAL, SymbolKind.EXPORTED):
            limit, area = (code_size, "code") if in_code else (ram_data_size, "data+bss")
            if value > limit:
                raise ModuleFormatError(
                    f"symbol {i} {name or '(local)'}: value {value:#x} is past the end of {area} ({limit:#x})",
                    entry_at + 4,
                )
        if kind is SymbolKind.EXPORTED:
            if name in exported:
                raise ModuleFormatError(f"symbol {i}: {name!r} is exported twice", entry_at)
            exported.add(name)
        symbols.append(Symbol(kind, value, in_code, name))
    return symbols
