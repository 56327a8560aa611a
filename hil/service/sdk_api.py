"""The embServe SDK ABI (API level 1) as seen from the firmware side.

What a module may import (:data:`IMPORTS`) and must export
(:data:`REQUIRED_EXPORTS`), the value types of inputs and outputs, and the
layouts and encodings shared by the runtime's host calls: the io struct, the
sensor reading struct, and ``printf`` formatting over an AAPCS ``va_list``
(a pointer to 32-bit argument words; doubles and 64-bit integers sit at the
next 8-byte aligned address, low word first, as soft-float varargs pass them).
"""

from __future__ import annotations

import enum
import re
import struct
from typing import Protocol

SDK_API_LEVEL = 1
#: functions a module may export; the firmware enters it only through these
EXPORTABLE = ("setup", "loop", "on_input", "on_quit")
REQUIRED_EXPORTS = ("setup", "loop")
IMPORTS = (
    "embserve_printf_impl",
    "embserve_output_impl",
    "embserve_get_sensor_impl",
    "embserve_get_sensor_data_impl",
    "embserve_sleep_impl",
    "memcpy",
    "memset",
    "strcmp",
)

KEY_SIZE = 32
IO_TYPE_AT = 32
IO_DATA_AT = 36
IO_LEN_AT = 40
IO_SIZE = 44
SENSOR_DATA_SIZE = 24  # i32 id, i32 type, u32 timestamp_ms, float values[3]
SENSOR_TEMPERATURE = 3
MAX_VALUES = 16  # values read from one output; more is certainly a bad length


class ValueType(enum.IntEnum):
    """The ``type`` of an input or output: in service.json and in the io struct."""

    INT = 0
    FLOAT = 1


_VALUE = {ValueType.INT: struct.Struct("<i"), ValueType.FLOAT: struct.Struct("<f")}
_CONVERSION = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d*))?(hh|h|ll|l|z|j|t|L)?([diouxXcsfFeEgGp%])")


class Memory(Protocol):
    def read(self, address: int, size: int, what: str = ...) -> bytes: ...
    def read_u32(self, address: int, what: str = ...) -> int: ...
    def read_cstring(self, address: int, limit: int = ..., what: str = ...) -> str: ...


def pack_io(key: str, type_: ValueType, data: int, count: int) -> bytes:
    raw = key.encode("utf-8")[: KEY_SIZE - 1].ljust(KEY_SIZE, b"\0")
    return raw + struct.pack("<B3xII", int(type_), data, count)


def read_io(mem: Memory, address: int) -> tuple[str, int, int, int]:
    """(key, type, data pointer, data_len) of the io struct at ``address``."""
    raw = mem.read(address, IO_SIZE, "io struct")
    key = raw[:KEY_SIZE].split(b"\0", 1)[0].decode("latin-1")
    type_code, data, count = struct.unpack_from("<B3xII", raw, IO_TYPE_AT)
    return key, type_code, data, count


def pack_value(type_: ValueType, value: float) -> bytes:
    return _VALUE[type_].pack(value)


def read_values(mem: Memory, type_: ValueType, address: int, count: int) -> list[int | float]:
    fmt = _VALUE[type_]
    raw = mem.read(address, fmt.size * count, "output data")
    return [fmt.unpack_from(raw, i * fmt.size)[0] for i in range(count)]


def pack_sensor_data(sensor_id: int, sensor_type: int, timestamp_ms: int, value: float) -> bytes:
    return struct.pack("<iiIfff", sensor_id, sensor_type, timestamp_ms & 0xFFFFFFFF, value, 0.0, 0.0)


class _VaList:
    def __init__(self, mem: Memory, address: int):
        self.mem = mem
        self.address = address

    def word(self) -> int:
        value = self.mem.read_u32(self.address, "printf argument")
        self.address += 4
        return value

    def double_word(self) -> bytes:
        self.address = (self.address + 7) & ~7
        raw = self.mem.read(self.address, 8, "printf argument")
        self.address += 8
        return raw


def format_printf(mem: Memory, fmt: str, va: int) -> str:
    """Format like the firmware's printf: %d %i %u %x %X %o %c %s %p %f %e %g %%, flags, width, precision."""
    args = _VaList(mem, va)

    def convert(match: re.Match[str]) -> str:
        flags, width, precision, length, conv = match.groups()
        if conv == "%":
            return "%"
        if width == "*":
            width = str(_signed(args.word()))
        if precision == "*":
            precision = str(max(0, _signed(args.word())))
        spec = "%" + flags + (width or "") + ("." + (precision or "0") if precision is not None else "")
        if conv in "fFeEgG":
            value: object = struct.unpack("<d", args.double_word())[0]
        elif conv == "s":
            pointer = args.word()
            value = "(null)" if pointer == 0 else mem.read_cstring(pointer, what="%s argument")
        elif conv == "c":
            value, conv = chr(args.word() & 0xFF), "s"
        elif conv == "p":
            return f"0x{args.word():x}"
        else:
            if length == "ll":
                raw, bits = int.from_bytes(args.double_word(), "little"), 64
            else:
                bits = {"hh": 8, "h": 16}.get(length or "", 32)
                raw = args.word() & ((1 << bits) - 1)
            if conv in "di":
                value = raw - (1 << bits) if raw >> (bits - 1) else raw
                conv = "d"
            else:
                value = raw
                conv = "d" if conv == "u" else conv
        return (spec + conv) % value

    return _CONVERSION.sub(convert, fmt)


def _signed(word: int) -> int:
    return word - (1 << 32) if word & 0x80000000 else word
