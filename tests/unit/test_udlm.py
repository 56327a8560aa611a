"""udynlink module format: parsing the real FITA binary, round trips, malformed modules."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from conftest import FITA_SERVICE

from hil.service.udlm import (
    HEADER,
    MAGIC,
    Module,
    ModuleFormatError,
    Relocation,
    Symbol,
    SymbolKind,
    parse_module,
)



def fita_module_bytes() -> bytes:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA artifacts not available at {FITA_SERVICE}")
    return base64.b64decode(json.loads(FITA_SERVICE.read_text())["service"])


def small_module() -> Module:
    return Module(
        num_lot=2,
        relocations=[Relocation(0, 3), Relocation(1, 4), Relocation(2, 5)],
        symbols=[
            Symbol(SymbolKind.MODULE_NAME, 0, False, "tiny"),
            Symbol(SymbolKind.EXPORTED, 0x1, True, "setup"),
            Symbol(SymbolKind.EXPORTED, 0x5, True, "loop"),
            Symbol(SymbolKind.LOCAL, 0x10, True),
            Symbol(SymbolKind.EXTERN, 0, False, "embserve_sleep_impl"),
            Symbol(SymbolKind.LOCAL, 0x4, False),
        ],
        code=bytes(range(32)),
        data=b"\0" * 8,
        bss_size=4,
    )


def test_fita_module_header_symbols_and_sizes():
    module = parse_module(fita_module_bytes())
    assert module.name == "temperature_sensor"
    assert set(module.exports) == {"setup", "loop", "on_input", "on_quit"}
    # export wrappers are 28 bytes each, placed first, entered in Thumb state
    assert sorted(module.exports.values()) == [0x01, 0x1D, 0x39, 0x55]
    assert set(module.imports) == {
        "embserve_printf_impl",
        "embserve_output_impl",
        "embserve_get_sensor_impl",
        "embserve_get_sensor_data_impl",
        "embserve_sleep_impl",
        "memcpy",
        "memset",
        "strcmp",
    }
    assert (module.num_lot, len(module.relocations), len(module.code), len(module.data), module.bss_size) == (
        28,
        28,
        920,
        0,
        8,
    )
    assert module.ram_size == 28 * 4 + 8
    assert module.data_relocations == []


def test_fita_module_repacks_byte_identical():
    blob = fita_module_bytes()
    assert parse_module(blob).pack() == blob


def test_round_trip_of_a_built_module():
    module = small_module()
    blob = module.pack()
    again = parse_module(blob)
    assert again == module
    assert again.exports == {"setup": 1, "loop": 5}
    assert again.imports == ["embserve_sleep_impl"]
    assert again.data_relocations == [Relocation(2, 5)]
    magic, num_lot, num_rels, symt_size, code_size, data_size, bss_size = HEADER.unpack_from(blob)
    assert (magic, num_lot, num_rels, code_size, data_size, bss_size) == (MAGIC, 2, 3, 32, 8, 4)
    assert len(blob) == HEADER.size + 8 * num_rels + symt_size + code_size + data_size
    assert (HEADER.size + 8 * num_rels + symt_size) % 4 == 0  # code stays word aligned


def _header(blob: bytes) -> list:
    return list(HEADER.unpack_from(blob))


def _with_header(blob: bytes, **changes: int) -> bytes:
    names = ["magic", "num_lot", "num_rels", "symt_size", "code_size", "data_size", "bss_size"]
    values = _header(blob)
    for key, value in changes.items():
        values[names.index(key)] = value
    return HEADER.pack(*values) + blob[HEADER.size :]


def _symt_at() -> int:
    return HEADER.size + 8 * len(small_module().relocations)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:10], "at offset 0x0: module is 10 bytes, shorter than the 24-byte header"),
        (lambda b: b"MLDU" + b[4:], "at offset 0x0: bad magic b'MLDU', expected b'UDLM'"),
        (lambda b: b[:-1], "(truncated)"),
        (lambda b: b + b"\0\0\0\0", "(trailing bytes)"),
        (lambda b: _with_header(b, code_size=4096), "truncated"),
        (lambda b: b[:24] + struct.pack("<II", 7, 3) + b[32:], "at offset 0x18: relocation 0: slot 7 is out of range (LOT has 2 entries, data 2 words)"),
        (lambda b: b[:28] + struct.pack("<I", 99) + b[32:], "at offset 0x1c: relocation 0: symbol index 99 is out of range (symbol table has 6 entries)"),
        (lambda b: b[:28] + struct.pack("<I", 0) + b[32:], "relocation 0: refers to the module name symbol 0"),
    ],
    ids=["short", "magic", "truncated", "trailing", "code-size", "reloc-slot", "reloc-symbol", "reloc-name"],
)
def test_malformed_module_is_rejected_with_offset(mutate, message):
    blob = small_module().pack()
    with pytest.raises(ModuleFormatError) as info:
        parse_module(mutate(blob))
    assert message in str(info.value)


def _patch_symbol(blob: bytes, index: int, word: int | None = None, value: int | None = None) -> bytes:
    at = _symt_at() + 4 + 8 * index
    old_word, old_value = struct.unpack_from("<II", blob, at)
    patched = struct.pack("<II", old_word if word is None else word, old_value if value is None else value)
    return blob[:at] + patched + blob[at + 8 :]


def test_symbol_name_outside_string_area_names_symbol_and_offset():
    blob = _patch_symbol(small_module().pack(), 1, word=(1 << 28) | 0x0FFFFFF0)
    with pytest.raises(ModuleFormatError) as info:
        parse_module(blob)
    assert f"at offset {_symt_at() + 12:#x}: symbol 1: name offset {0x0FFFFFF0} is outside the string area" in str(info.value)


def test_symbol_value_past_code_end():
    blob = _patch_symbol(small_module().pack(), 3, value=0x400)
    with pytest.raises(ModuleFormatError, match=r"symbol 3 \(local\): value 0x400 is past the end of code \(0x20\)"):
        parse_module(blob)


def test_first_symbol_must_name_the_module():
    module = small_module()
    module.symbols[0] = Symbol(SymbolKind.LOCAL, 0, False)
    with pytest.raises(ModuleFormatError, match="symbol 0 must be the module name"):
        parse_module(module.pack())


def test_symbol_count_larger_than_table():
    blob = small_module().pack()
    at = _symt_at()
    blob = blob[:at] + struct.pack("<I", 1000) + blob[at + 4 :]
    with pytest.raises(ModuleFormatError, match=f"at offset {at:#x}: symbol table claims 1000 entries"):
        parse_module(blob)


def test_duplicate_export_is_rejected():
    module = small_module()
    module.symbols[2] = Symbol(SymbolKind.EXPORTED, 0x5, True, "setup")
    with pytest.raises(ModuleFormatError, match="'setup' is exported twice"):
        parse_module(module.pack())
