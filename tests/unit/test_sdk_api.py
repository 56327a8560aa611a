"""SDK ABI helpers: printf over an AAPCS va_list, io struct and sensor data layouts."""

from __future__ import annotations

import struct

import pytest

from hil.service import sdk_api
from hil.service.cpu import GuestError
from hil.service.sdk_api import ValueType


class FakeMemory:
    """Guest memory as a dict of byte arrays (a test fake for the machine)."""

    def __init__(self, base: int, data: bytes):
        self.base = base
        self.data = bytearray(data)

    def read(self, address: int, size: int, what: str = "memory") -> bytes:
        offset = address - self.base
        if offset < 0 or offset + size > len(self.data):
            raise GuestError(f"bad pointer: {what} at {address:#x}")
        return bytes(self.data[offset : offset + size])

    def read_u32(self, address: int, what: str = "word") -> int:
        return struct.unpack("<I", self.read(address, 4, what))[0]

    def read_cstring(self, address: int, limit: int = 1024, what: str = "string") -> str:
        offset = address - self.base
        if not 0 <= offset < len(self.data) or 0 not in self.data[offset:]:
            raise GuestError(f"bad pointer: {what} at {address:#x}")
        return self.data[offset : self.data.index(0, offset)].decode("latin-1")


BASE = 0x2000_0000
STRINGS = BASE + 0x100


def va_memory(words: bytes, strings: bytes = b"hello\0") -> FakeMemory:
    return FakeMemory(BASE, words.ljust(0x100, b"\0") + strings)


def test_integers_strings_and_chars():
    args = struct.pack("<iIIIIi", -5, 4000000000, 0xBEEF, ord("Z"), STRINGS, 7)
    mem = va_memory(args)
    text = sdk_api.format_printf(mem, "%d %u %x %c %s %i%%", BASE)
    assert text == "-5 4000000000 beef Z hello 7%"


def test_width_flags_precision_and_long():
    args = struct.pack("<iIIi", 42, 0xFFFFFFFF, 255, -3)
    text = sdk_api.format_printf(va_memory(args), "[%5d][%lu][%08X][%-4i]", BASE)
    assert text == "[   42][4294967295][000000FF][-3  ]"


def test_double_after_one_word_is_read_from_the_next_8_byte_boundary():
    # soft-float varargs: int at +0, padding at +4, double at +8
    args = struct.pack("<iId", 3, 0xDEADBEEF, 2.5) + struct.pack("<i", 9)
    text = sdk_api.format_printf(va_memory(args), "%d %f %.1f", BASE)
    assert text.startswith("3 2.500000 ")
    # the next argument after the double starts at +16
    assert sdk_api.format_printf(va_memory(args), "%d %f %d", BASE) == "3 2.500000 9"


def test_doubles_back_to_back():
    args = struct.pack("<ddd", -0.125, 1e3, 0.5)
    assert sdk_api.format_printf(va_memory(args), "%f|%.2e|%g", BASE) == "-0.125000|1.00e+03|0.5"


def test_null_string_and_unknown_conversions_pass_through():
    args = struct.pack("<I", 0)
    assert sdk_api.format_printf(va_memory(args), "%s %q 100%", BASE) == "(null) %q 100%"


def test_bad_string_pointer_faults():
    args = struct.pack("<I", 0x1234)
    with pytest.raises(GuestError, match="bad pointer"):
        sdk_api.format_printf(va_memory(args), "%s", BASE)


def test_io_struct_layout():
    raw = sdk_api.pack_io("rate", ValueType.INT, 0x2000_0010, 1)
    assert len(raw) == sdk_api.IO_SIZE == 44
    assert raw[:5] == b"rate\0" and raw[31] == 0
    assert raw[32] == 0  # type
    assert struct.unpack_from("<II", raw, 36) == (0x2000_0010, 1)
    mem = FakeMemory(BASE, raw)
    assert sdk_api.read_io(mem, BASE) == ("rate", 0, 0x2000_0010, 1)


def test_long_keys_are_truncated_to_31_bytes_and_terminated():
    raw = sdk_api.pack_io("k" * 40, ValueType.FLOAT, 0, 1)
    assert raw[:31] == b"k" * 31 and raw[31] == 0 and raw[32] == 1


def test_sensor_data_layout_puts_values_at_offset_12():
    raw = sdk_api.pack_sensor_data(3, 3, 123456, 21.5)
    assert len(raw) == sdk_api.SENSOR_DATA_SIZE == 24
    assert struct.unpack_from("<iiI", raw) == (3, 3, 123456)
    assert struct.unpack_from("<f", raw, 12)[0] == 21.5


def test_values_round_trip_through_guest_encoding():
    assert sdk_api.read_values(FakeMemory(BASE, sdk_api.pack_value(ValueType.FLOAT, 21.3)), ValueType.FLOAT, BASE, 1) == [
        pytest.approx(21.3, abs=1e-6)
    ]
    mem = FakeMemory(BASE, struct.pack("<ii", -7, 8))
    assert sdk_api.read_values(mem, ValueType.INT, BASE, 2) == [-7, 8]
