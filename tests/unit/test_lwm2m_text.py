"""text/plain (format 0) and octet-stream (format 42) codecs."""

from __future__ import annotations

import pytest

from hil.lwm2m import codecs, text
from hil.lwm2m.model import CodecError, ObjLnk, Path, ResourceType, resource_type

TEST_OBJ = 42000
TEST_TYPES = {
    0: ResourceType.INTEGER,
    1: ResourceType.FLOAT,
    2: ResourceType.STRING,
    3: ResourceType.BOOLEAN,
    4: ResourceType.OPAQUE,
    5: ResourceType.TIME,
    6: ResourceType.OBJLNK,
}


def types_of_test_obj(path: Path) -> ResourceType:
    return TEST_TYPES[path.res] if path.obj == TEST_OBJ else resource_type(path)


@pytest.mark.parametrize(
    "res, value, expected",
    [
        (0, 0, b"0"),
        (0, -129, b"-129"),
        (0, 2**63 - 1, b"9223372036854775807"),
        (0, -(2**63), b"-9223372036854775808"),
        (1, 0.1, b"0.1"),
        (1, 0.5, b"0.5"),
        (1, -2.0, b"-2.0"),
        (1, 1e300, b"1e+300"),
        (1, 1 / 3, b"0.3333333333333333"),
        (2, "héllo ✓", "héllo ✓".encode()),
        (2, "", b""),
        (3, True, b"1"),
        (3, False, b"0"),
        (4, b"\x00\xffhi", b"AP9oaQ=="),
        (4, b"", b""),
        (5, 1_700_000_000, b"1700000000"),
        (6, ObjLnk(9, 1000), b"9:1000"),
        (6, ObjLnk(65535, 0), b"65535:0"),
    ],
)
def test_round_trip_every_type(res, value, expected):
    path = Path(TEST_OBJ, 0, res)
    payload = codecs.encode({path: value}, path, codecs.TEXT)
    assert payload == expected
    decoded = codecs.decode(payload, path, codecs.TEXT, types_of_test_obj)
    assert decoded == {path: value}
    assert type(decoded[path]) is type(value)


def test_model_types_drive_encoding():
    # /3303/x/5700 is a float: an int value is written as a float
    assert text.encode_content({Path(3303, 0, 5700): 21}, Path(3303, 0, 5700)) == b"21.0"
    assert text.decode_content(b"21", Path(3303, 0, 5700)) == {Path(3303, 0, 5700): 21.0}
    assert text.decode_content(b"1.5e3", Path(3303, 0, 5700)) == {Path(3303, 0, 5700): 1500.0}


def test_resource_instance_of_a_multiple_resource():
    path = Path(3, 0, 11, 1)
    assert text.encode_content({path: 5, Path(3, 0, 11, 0): 0}, path) == b"5"
    assert text.decode_content(b"5", path) == {path: 5}


def test_no_content_format_at_resource_base_means_text():
    assert codecs.decode(b"42", Path(3, 0, 9), None) == {Path(3, 0, 9): 42}


def test_multiple_resource_cannot_be_one_text_value():
    content = {Path(3, 0, 11, 0): 0, Path(3, 0, 11, 1): 1}
    with pytest.raises(CodecError, match="multiple resource with 2 instance"):
        text.encode_content(content, Path(3, 0, 11))


def test_instance_base_is_refused():
    with pytest.raises(CodecError, match="/3/0 is not a resource path"):
        text.encode_content({Path(3, 0, 0): "x"}, Path(3, 0))


def test_missing_value_is_refused():
    with pytest.raises(CodecError, match="no value for /3/0/0"):
        text.encode_content({Path(3, 0, 1): "x"}, Path(3, 0, 0))


def test_non_finite_float_has_no_text_form():
    with pytest.raises(CodecError, match="finite"):
        text.encode_content({Path(3303, 0, 5700): float("nan")}, Path(3303, 0, 5700))


def test_wrong_python_type_for_known_resource():
    with pytest.raises(CodecError, match="/3/0/9: integer expected"):
        text.encode_content({Path(3, 0, 9): "full"}, Path(3, 0, 9))


@pytest.mark.parametrize(
    "res, payload, message",
    [
        (0, b"12a4", "at offset 2: '12a4' is not a decimal integer"),
        (0, b"", "at offset 0: '' is not a decimal integer"),
        (0, b"1.5", "at offset 1: '1.5' is not a decimal integer"),
        (0, b" 7", "at offset 0: ' 7' is not a decimal integer"),
        (0, b"9223372036854775808", "at offset 0: 9223372036854775808 does not fit in a 64-bit integer"),
        (5, b"soon", "at offset 0: 'soon' is not a decimal integer (time resource)"),
        (1, b"nan", "at offset 0: 'nan' is not a decimal number"),
        (1, b"1.5x", "at offset 3: '1.5x' is not a decimal number"),
        (1, b"1e999", "at offset 0: 1e999 is out of the range of a double"),
        (3, b"true", "at offset 0: 'true' is not a boolean"),
        (6, b"3/0", "at offset 1: '3/0' is not an object link"),
        (6, b"3:70000", "at offset 0: object link 3:70000 has a part above 65535"),
        (4, b"AP9o!Q==", "at offset 4: base64 expected"),
        (4, b"AP9", "at offset 3: bad base64"),
        (2, b"ab\xffcd", "at offset 2: text is not valid UTF-8"),
    ],
)
def test_malformed_text_names_the_offset(res, payload, message):
    with pytest.raises(CodecError) as err:
        text.decode_content(payload, Path(TEST_OBJ, 0, res), types_of_test_obj)
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.offset == int(message.split()[2].rstrip(":"))


def test_opaque_format_round_trip():
    path = Path(9, 0, 2)
    package = bytes(range(256)) * 11
    assert codecs.encode({path: package}, path, codecs.OPAQUE) == package
    assert codecs.decode(package, path, codecs.OPAQUE) == {path: package}
    assert codecs.decode(b"", path, codecs.OPAQUE) == {path: b""}


def test_opaque_format_needs_bytes():
    with pytest.raises(CodecError, match="octet-stream needs a bytes value, got str"):
        codecs.encode({Path(3, 0, 0): "x"}, Path(3, 0, 0), codecs.OPAQUE)


def test_opaque_format_needs_a_resource_base():
    with pytest.raises(CodecError, match="/9/0 is not a resource path"):
        codecs.decode(b"x", Path(9, 0), codecs.OPAQUE)


def test_object_link_parts_must_fit_16_bits():
    path = Path(35003, 0, 27400)
    with pytest.raises(CodecError, match="object link 70000:0 has a part outside 0..65535"):
        text.encode_content({path: ObjLnk(70000, 0)}, path)
