"""LwM2M TLV codec: spec vector, round trips at every base, malformed input."""

from __future__ import annotations

import struct

import pytest

from hil.lwm2m import codecs, tlv
from hil.lwm2m.model import CodecError, ObjLnk, Path, ResourceType, resource_type

I, F, S, B, O, T, L = (
    ResourceType.INTEGER,
    ResourceType.FLOAT,
    ResourceType.STRING,
    ResourceType.BOOLEAN,
    ResourceType.OPAQUE,
    ResourceType.TIME,
    ResourceType.OBJLNK,
)

# OMA LwM2M TS 1.0, section 6.4.3.1: Read of Device object instance /3/0 as TLV.
SPEC_DEVICE_TLV = bytes.fromhex(
    "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65"
    "C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74"
    "C8 02 09 33 34 35 30 30 30 31 32 33"
    "C3 03 31 2E 30"
    "86 06 41 00 01 41 01 05"
    "88 07 08 42 00 0E D8 42 01 13 88"
    "87 08 41 00 7D 42 01 03 84"
    "C1 09 64"
    "C1 0A 0F"
    "83 0B 41 00 00"
    "C4 0D 51 82 42 8F"
    "C6 0E 2B 30 32 3A 30 30"
    "C1 10 55"
)
SPEC_DEVICE = {
    Path(3, 0, 0): "Open Mobile Alliance",
    Path(3, 0, 1): "Lightweight M2M Client",
    Path(3, 0, 2): "345000123",
    Path(3, 0, 3): "1.0",
    Path(3, 0, 6, 0): 1,
    Path(3, 0, 6, 1): 5,
    Path(3, 0, 7, 0): 3800,
    Path(3, 0, 7, 1): 5000,
    Path(3, 0, 8, 0): 125,
    Path(3, 0, 8, 1): 900,
    Path(3, 0, 9): 100,
    Path(3, 0, 10): 15,
    Path(3, 0, 11, 0): 0,
    Path(3, 0, 13): 0x5182428F,
    Path(3, 0, 14): "+02:00",
    Path(3, 0, 16): "U",
}


def device_types(path: Path) -> ResourceType:
    # the spec example uses power-source and memory resources our model leaves out
    if path.obj == 3 and path.res in (6, 7, 8, 10):
        return I
    return resource_type(path)


# A made-up object (unknown to the model) with one resource of every type.
TEST_OBJ = 42000
TEST_TYPES = {0: I, 1: F, 2: S, 3: B, 4: O, 5: T, 6: L, 7: I, 8: S}


def types_of_test_obj(path: Path) -> ResourceType:
    return TEST_TYPES[path.res] if path.obj == TEST_OBJ else resource_type(path)


def test_spec_device_example_encodes_to_the_spec_bytes():
    assert tlv.encode_content(SPEC_DEVICE, Path(3, 0)) == SPEC_DEVICE_TLV
    assert len(SPEC_DEVICE_TLV) == 121


def test_spec_device_example_decodes():
    assert codecs.decode(SPEC_DEVICE_TLV, Path(3, 0), codecs.TLV, device_types) == SPEC_DEVICE


def test_old_content_format_1542_is_accepted_on_input():
    assert codecs.decode(SPEC_DEVICE_TLV, Path(3, 0), codecs.TLV_OLD, device_types) == SPEC_DEVICE


def test_no_content_format_at_instance_base_means_tlv():
    assert codecs.decode(SPEC_DEVICE_TLV, Path(3, 0), None, device_types) == SPEC_DEVICE


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "00"),
        (127, "7f"),
        (128, "0080"),
        (-128, "80"),
        (-129, "ff7f"),
        (32767, "7fff"),
        (32768, "00008000"),
        (2**31 - 1, "7fffffff"),
        (2**31, "0000000080000000"),
        (2**63 - 1, "7fffffffffffffff"),
        (-(2**63), "8000000000000000"),
    ],
)
def test_integer_uses_shortest_width_and_round_trips(value, expected):
    path = Path(TEST_OBJ, 0, 0)
    payload = tlv.encode_content({path: value}, path)
    value_bytes = bytes.fromhex(expected)
    assert payload == tlv.frame(tlv.Kind.RESOURCE, 0, value_bytes)
    assert tlv.decode_content(payload, path, types_of_test_obj) == {path: value}


def test_integer_beyond_64_bits_is_refused():
    path = Path(TEST_OBJ, 0, 0)
    with pytest.raises(CodecError, match="does not fit in 64 bits"):
        tlv.encode_content({path: 2**63}, path)


@pytest.mark.parametrize(
    "value, size",
    [(0.5, 4), (-2.25, 4), (21.5, 4), (0.1, 8), (1e300, 8), (float("inf"), 4), (3.4028234663852886e38, 4)],
)
def test_float_width_and_round_trip(value, size):
    path = Path(TEST_OBJ, 0, 1)
    payload = tlv.encode_content({path: value}, path)
    (frame,) = tlv.split(payload)
    assert frame.value_end - frame.value_start == size
    assert tlv.decode_content(payload, path, types_of_test_obj) == {path: value}


def test_float_resource_given_an_int_encodes_as_float():
    path = Path(3303, 0, 5700)
    payload = tlv.encode_content({path: 21}, path)
    assert payload == bytes.fromhex("E4 16 44") + struct.pack(">f", 21.0)
    assert tlv.decode_content(payload, path) == {path: 21.0}


ALL_TYPES = {
    Path(TEST_OBJ, 0, 0): -5,
    Path(TEST_OBJ, 0, 1): 0.1,
    Path(TEST_OBJ, 0, 2): "héllo ✓",
    Path(TEST_OBJ, 0, 3): True,
    Path(TEST_OBJ, 0, 4): bytes(range(256)) * 2,  # forces a 16-bit length field
    Path(TEST_OBJ, 0, 5): 1_700_000_000,
    Path(TEST_OBJ, 0, 6): ObjLnk(9, 1000),
    Path(TEST_OBJ, 0, 7, 0): 1,
    Path(TEST_OBJ, 0, 7, 3): -(2**40),
    Path(TEST_OBJ, 0, 8, 1): "",
}


def test_instance_round_trip_with_every_type():
    payload = tlv.encode_content(ALL_TYPES, Path(TEST_OBJ, 0))
    assert tlv.decode_content(payload, Path(TEST_OBJ, 0), types_of_test_obj) == ALL_TYPES


def test_object_round_trip_with_several_instances():
    second = {Path(p.obj, 7, p.res, p.ri): v for p, v in ALL_TYPES.items()}
    content = ALL_TYPES | second | {Path(TEST_OBJ, 300, 3): False}  # 300 needs a 16-bit id
    payload = tlv.encode_content(content, Path(TEST_OBJ))
    assert payload[0] == 0x10  # Object Instance TLV, 8-bit id, 16-bit length field
    assert [(t.kind, t.id) for t in tlv.split(payload)] == [(tlv.Kind.OBJECT_INSTANCE, i) for i in (0, 7, 300)]
    assert tlv.decode_content(payload, Path(TEST_OBJ), types_of_test_obj) == content


def test_empty_string_and_opaque_values():
    content = {Path(TEST_OBJ, 0, 2): "", Path(TEST_OBJ, 0, 4): b""}
    payload = tlv.encode_content(content, Path(TEST_OBJ, 0))
    assert payload == bytes([0xC0, 2, 0xC0, 4])
    assert tlv.decode_content(payload, Path(TEST_OBJ, 0), types_of_test_obj) == content


def test_multiple_resource_at_resource_base():
    content = {Path(3, 0, 11, 0): 0, Path(3, 0, 11, 1): 300}
    payload = tlv.encode_content(content, Path(3, 0, 11))
    assert payload == bytes.fromhex("87 0B 41 00 00 42 01 01 2C")
    assert tlv.decode_content(payload, Path(3, 0, 11)) == content


def test_model_multiple_resource_with_one_instance_still_uses_multiple_resource_tlv():
    payload = tlv.encode_content({Path(3, 0, 11, 0): 0}, Path(3, 0))
    assert payload == bytes.fromhex("83 0B 41 00 00")


def test_multiple_resource_given_as_one_value_is_refused():
    with pytest.raises(CodecError, match="multiple resource"):
        tlv.encode_content({Path(3, 0, 11): 0}, Path(3, 0))


def test_resource_instance_base():
    path = Path(3, 0, 11, 2)
    payload = tlv.encode_content({path: 5}, path)
    assert payload == bytes.fromhex("41 02 05")
    assert tlv.decode_content(payload, path) == {path: 5}


def test_single_resource_and_objlnk():
    path = Path(35003, 1, 27400)
    payload = tlv.encode_content({path: ObjLnk(9, 1000)}, path)
    assert payload == bytes.fromhex("E4 6B 08 00 09 03 E8")
    assert tlv.decode_content(payload, path) == {path: ObjLnk(9, 1000)}


def test_objlnk_given_as_text_encodes():
    path = Path(35003, 1, 27400)
    assert tlv.encode_content({path: "3:0"}, path) == bytes.fromhex("E4 6B 08 00 03 00 00")


def test_unknown_resource_decodes_as_bytes():
    payload = bytes.fromhex("C2 05 AB CD")
    assert tlv.decode_content(payload, Path(42001, 0)) == {Path(42001, 0, 5): b"\xab\xcd"}


def test_bool_values():
    path = Path(9, 0, 12)
    assert tlv.encode_content({path: False}, path) == bytes.fromhex("C1 0C 00")
    assert tlv.decode_content(bytes.fromhex("C1 0C 01"), path) == {path: True}


# Nestings a peer may answer with, relative to the request base.
def test_object_instance_tlv_answering_an_instance_read():
    payload = tlv.frame(tlv.Kind.OBJECT_INSTANCE, 0, SPEC_DEVICE_TLV)
    assert tlv.decode_content(payload, Path(3, 0), device_types) == SPEC_DEVICE


def test_object_instance_tlv_answering_an_object_read():
    payload = tlv.frame(tlv.Kind.OBJECT_INSTANCE, 0, SPEC_DEVICE_TLV)
    assert tlv.decode_content(payload, Path(3), device_types) == SPEC_DEVICE


def test_resource_tlvs_answering_a_single_instance_object_read():
    assert tlv.decode_content(SPEC_DEVICE_TLV, Path(3), device_types) == SPEC_DEVICE


def test_resource_tlvs_at_a_multi_instance_object_base_are_refused():
    with pytest.raises(CodecError, match=r"at offset 0: Resource TLV \(id 0\) is not expected at /9"):
        tlv.decode_content(bytes.fromhex("C1 00 41"), Path(9))


def test_single_resource_tlv_answering_a_resource_read():
    payload = bytes.fromhex("C8 00 14") + b"Open Mobile Alliance"
    assert tlv.decode_content(payload, Path(3, 0, 0)) == {Path(3, 0, 0): "Open Mobile Alliance"}


def test_resource_instance_tlvs_answering_a_multiple_resource_read():
    payload = bytes.fromhex("41 00 00 41 01 07")
    assert tlv.decode_content(payload, Path(3, 0, 11)) == {Path(3, 0, 11, 0): 0, Path(3, 0, 11, 1): 7}


def test_resource_id_other_than_requested_is_refused():
    with pytest.raises(CodecError, match=r"at offset 0: Resource TLV id 1 does not match the requested path /3/0/0"):
        tlv.decode_content(bytes.fromhex("C1 01 41"), Path(3, 0, 0))


def test_length_fields_of_every_width():
    path = Path(TEST_OBJ, 0, 4)
    for size, header in [(7, "C7 04"), (8, "C8 04 08"), (256, "D0 04 01 00"), (70000, "D8 04 01 11 70")]:
        payload = tlv.encode_content({path: b"x" * size}, path)
        assert payload.startswith(bytes.fromhex(header)), size
        assert tlv.decode_content(payload, path, types_of_test_obj) == {path: b"x" * size}


def test_24_bit_length_is_the_limit():
    path = Path(TEST_OBJ, 0, 4)
    with pytest.raises(CodecError, match="24-bit"):
        tlv.encode_content({path: bytes(1 << 24)}, path)


@pytest.mark.parametrize(
    "hexbytes, base, message",
    [
        ("C8", Path(3, 0), "at offset 1: TLV identifier needs 1 bytes, 0 left"),
        ("E8 00", Path(3, 0), "at offset 1: TLV identifier needs 2 bytes, 1 left"),
        ("C1 00 41 D0 01 00", Path(3, 0), "at offset 5: TLV length field needs 2 bytes, 1 left"),
        ("C8 00 05 41 42", Path(3, 0), "at offset 3: TLV value needs 5 bytes, 2 left"),
        ("C3 09 00 00 01", Path(3, 0), "at offset 2: integer of length 3"),
        ("E2 16 44 00 01", Path(3303, 0), "at offset 3: float of length 2"),
        ("C2 00 C3 28", Path(3, 0), "at offset 2: string is not valid UTF-8"),
        ("C1 0C 02", Path(9, 0), "at offset 2: boolean byte 0x02"),
        ("E2 6B 08 00 00", Path(35003, 0), "at offset 3: object link of length 2"),
        ("83 0B C1 00 00", Path(3, 0), "at offset 2: Resource TLV inside the Multiple Resource TLV of /3/0/11"),
        ("03 00 41 00 00", Path(3), "at offset 2: Resource Instance TLV inside the Object Instance TLV of /3/0"),
        ("41 00 00", Path(3, 0), "at offset 0: Resource Instance TLV (id 0) is not expected at /3/0"),
        ("C1 00 41 C1 00 42", Path(3, 0), "at offset 3: /3/0/0 appears twice"),
    ],
)
def test_malformed_tlv_names_the_offset(hexbytes, base, message):
    payload = bytes.fromhex(hexbytes)
    with pytest.raises(CodecError) as err:
        tlv.decode_content(payload, base)
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.offset == int(message.split()[2].rstrip(":"))


def test_truncated_payloads_never_escape_as_other_errors():
    cut_at_boundary = 0
    for cut in range(1, len(SPEC_DEVICE_TLV)):
        try:
            decoded = tlv.decode_content(SPEC_DEVICE_TLV[:cut], Path(3, 0), device_types)
        except CodecError as exc:
            assert exc.offset is not None and 0 <= exc.offset <= cut
        else:
            # a cut between two resources leaves the leading resources intact
            assert decoded.items() <= SPEC_DEVICE.items()
            cut_at_boundary += 1
    assert cut_at_boundary == 12  # 13 top-level TLVs, the full payload excluded


def test_empty_object_instance_tlv_yields_no_content():
    assert tlv.decode_content(bytes.fromhex("00 00"), Path(3)) == {}


def test_object_link_parts_must_fit_16_bits():
    path = Path(35003, 0, 27400)
    with pytest.raises(CodecError, match="object link 70000:0 has a part outside 0..65535"):
        tlv.encode_content({path: ObjLnk(70000, 0)}, path)
