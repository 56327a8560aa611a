"""SenML JSON (format 110) codec."""

from __future__ import annotations

import json

import pytest

from hil.lwm2m import codecs, senml
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
    7: ResourceType.INTEGER,
}


def types_of_test_obj(path: Path) -> ResourceType:
    return TEST_TYPES[path.res] if path.obj == TEST_OBJ else resource_type(path)


ALL_TYPES = {
    Path(TEST_OBJ, 0, 0): -(2**63),
    Path(TEST_OBJ, 0, 1): 0.1,
    Path(TEST_OBJ, 0, 2): "héllo ✓",
    Path(TEST_OBJ, 0, 3): False,
    Path(TEST_OBJ, 0, 4): b"\xfb\xff\x00",
    Path(TEST_OBJ, 0, 5): 1_700_000_000,
    Path(TEST_OBJ, 0, 6): ObjLnk(3, 0),
    Path(TEST_OBJ, 0, 7, 0): 2**63 - 1,
    Path(TEST_OBJ, 0, 7, 5): 128,
}


def test_instance_round_trip_every_type():
    payload = codecs.encode(ALL_TYPES, Path(TEST_OBJ, 0), codecs.SENML_JSON)
    decoded = codecs.decode(payload, Path(TEST_OBJ, 0), codecs.SENML_JSON, types_of_test_obj)
    assert decoded == ALL_TYPES
    assert {p: type(v) for p, v in decoded.items()} == {p: type(v) for p, v in ALL_TYPES.items()}


def test_encoded_records_follow_lwm2m_senml():
    records = json.loads(senml.encode_content(ALL_TYPES, Path(TEST_OBJ, 0)))
    assert records == [
        {"bn": "/42000/0/", "n": "0", "v": -(2**63)},
        {"n": "1", "v": 0.1},
        {"n": "2", "vs": "héllo ✓"},
        {"n": "3", "vb": False},
        {"n": "4", "vd": "-_8A"},  # base64url, padding stripped
        {"n": "5", "v": 1_700_000_000},
        {"n": "6", "vlo": "3:0"},
        {"n": "7/0", "v": 2**63 - 1},
        {"n": "7/5", "v": 128},
    ]


def test_object_round_trip_with_several_instances():
    content = {Path(3303, i, r): v for i in (0, 1, 12) for r, v in ((5700, 21.5 + i), (5701, "Cel"))}
    payload = senml.encode_content(content, Path(3303))
    assert json.loads(payload)[0] == {"bn": "/3303/", "n": "0/5700", "v": 21.5}
    assert senml.decode_content(payload, Path(3303)) == content


def test_single_resource_uses_full_base_name():
    path = Path(3, 0, 0)
    payload = senml.encode_content({path: "Open Mobile Alliance"}, path)
    assert payload == b'[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]'
    assert senml.decode_content(payload, path) == {path: "Open Mobile Alliance"}


def test_multiple_resource_base():
    content = {Path(3, 0, 11, 0): 0, Path(3, 0, 11, 3): 7}
    payload = senml.encode_content(content, Path(3, 0, 11))
    assert json.loads(payload) == [{"bn": "/3/0/11/", "n": "0", "v": 0}, {"n": "3", "v": 7}]
    assert senml.decode_content(payload, Path(3, 0, 11)) == content


def test_empty_string_and_opaque():
    content = {Path(TEST_OBJ, 0, 2): "", Path(TEST_OBJ, 0, 4): b""}
    payload = senml.encode_content(content, Path(TEST_OBJ, 0))
    assert json.loads(payload) == [{"bn": "/42000/0/", "n": "2", "vs": ""}, {"n": "4", "vd": ""}]
    assert senml.decode_content(payload, Path(TEST_OBJ, 0), types_of_test_obj) == content


def test_base_name_changes_mid_pack_and_names_concatenate():
    payload = b"""[
        {"bn": "/3/0/", "n": "0", "vs": "ACME"},
        {"n": "9", "v": 80},
        {"bn": "/3303/1/", "n": "5700", "v": 20},
        {"n": "5701", "vs": "Cel"},
        {"bn": "/3/0/11/0", "v": 2}
    ]"""
    assert senml.decode_content(payload, None) == {
        Path(3, 0, 0): "ACME",
        Path(3, 0, 9): 80,
        Path(3303, 1, 5700): 20.0,
        Path(3303, 1, 5701): "Cel",
        Path(3, 0, 11, 0): 2,
    }


def test_name_only_in_n_and_base_value():
    payload = b'[{"n": "/3/0/9", "v": 80}, {"bn": "/3303/0/", "bv": 20, "n": "5700", "v": 1.5}]'
    assert senml.decode_content(payload, None) == {Path(3, 0, 9): 80, Path(3303, 0, 5700): 21.5}


def test_integral_float_for_an_integer_resource_becomes_int():
    decoded = senml.decode_content(b'[{"bn":"/3/0/9","v":80.0}]', Path(3, 0, 9))
    assert decoded == {Path(3, 0, 9): 80} and type(decoded[Path(3, 0, 9)]) is int


def test_unknown_resource_keeps_the_records_own_type():
    payload = b'[{"bn":"/42001/0/","n":"1","vs":"x"},{"n":"2","v":3},{"n":"3","vb":true},{"n":"4","vd":"AQ"}]'
    assert senml.decode_content(payload, Path(42001, 0)) == {
        Path(42001, 0, 1): "x",
        Path(42001, 0, 2): 3,
        Path(42001, 0, 3): True,
        Path(42001, 0, 4): b"\x01",
    }


def test_vd_with_padding_is_accepted():
    assert senml.decode_content(b'[{"bn":"/9/0/2","vd":"AQ=="}]', Path(9, 0, 2)) == {Path(9, 0, 2): b"\x01"}


def test_encode_refuses_paths_outside_base_and_nan():
    with pytest.raises(CodecError, match="/3/0/0 is not below the base path /9"):
        senml.encode_content({Path(3, 0, 0): "x"}, Path(9))
    with pytest.raises(CodecError, match="finite"):
        senml.encode_content({Path(3303, 0, 5700): float("inf")}, Path(3303, 0))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b'{"bn":"/3/0/0"}', "at offset 0: SenML JSON pack must be a JSON array"),
        (b'[{"v":1}]', "at offset 1: record 0: SenML record without name"),
        (b'[{"bn":"/3/0/0","vs":"x"}, {"v":1}]', "at offset 27: record 1: /3/0/0 appears twice"),
        (b'[{"bn":"/3/0/","n":"0","vs":"x"},{"n":"9"}]', "at offset 33: record 1 (/3/0/9): no value"),
        (b'[{"bn":"/3/0/9","vs":"80"}]', "at offset 1: record 0 (/3/0/9): vs given but the resource is integer"),
        (b'[{"bn":"/3/0/9","v":80.5}]', "at offset 1: record 0 (/3/0/9): integer resource needs an integral v"),
        (b'[{"bn":"/3/0/9","v":true}]', "at offset 1: record 0 (/3/0/9): v must be a number"),
        (b'[{"bn":"/3/0/9","v":1,"vs":"1"}]', "at offset 1: record 0 (/3/0/9): a record carries one value"),
        (b'[{"bn":"/3/0/9","v":9223372036854775808}]', "at offset 1: record 0 (/3/0/9): 9223372036854775808 does"),
        (b'[{"bn":"/9/0/2","vd":"A+=="}]', "at offset 1: record 0 (/9/0/2): vd is not base64url"),
        (b'[{"bn":"/9/0/2","vd":"ABCDE"}]', "at offset 1: record 0 (/9/0/2): vd of 5 base64url"),
        (b'[{"bn":"/35003/0/27400","vlo":"9-1"}]', "at offset 1: record 0 (/35003/0/27400): vlo must be"),
        (b'[{"bn":"/3/x/0","vs":"a"}]', "at offset 1: record 0: bad LwM2M path '/3/x/0'"),
        (b'[{"bn":"/3/0","vs":"a"}]', "at offset 1: record 0: name '/3/0' must be an absolute resource"),
        (b'[{"bn":"/9/0/0","vs":"a"}]', "at offset 1: record 0: /9/0/0 is not below the requested path /3"),
        (b'[{"bn":5,"vs":"a"}]', "at offset 1: record 0: bn must be a string"),
        (b'[1]', "at offset 1: record 0: a SenML record must be a JSON object"),
        (b'[{"bn":"/3/0/0","vs":"a"} {"n":"1"}]', "at offset 26: expected ',' or ']'"),
        (b'[{"bn":"/3/0/0","vs":"a"}] x', "at offset 27: trailing data"),
        (b'[{"bn":"/3/0/0","vs":"a}]', "at offset 21: bad JSON"),
        (b'[{"bn":"\xc3\xa9/3/0/0"', "at offset 17: bad JSON"),
        (b'[{"bn":"/3/0/0","vs":"\xff"}]', "at offset 22: SenML JSON is not valid UTF-8"),
    ],
)
def test_malformed_senml_names_the_offset(payload, message):
    base = Path(3) if "requested path" in message else None
    with pytest.raises(CodecError) as err:
        senml.decode_content(payload, base)
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.offset == int(message.split()[2].rstrip(":"))


def test_offsets_count_bytes_not_characters():
    # "é" is two bytes: the second record starts at character 26, byte 27
    payload = '[{"bn":"/3/0/0","vs":"é"},{"bn":"/3/0/0","vs":"a"}]'.encode()
    with pytest.raises(CodecError) as err:
        senml.decode_content(payload, Path(3))
    assert err.value.offset == 27 and "appears twice" in str(err.value)
