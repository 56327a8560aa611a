"""SenML CBOR (format 112) codec: round trips, the RFC 8428 labels, malformed input."""

from __future__ import annotations

import cbor2
import pytest
from test_lwm2m_senml import ALL_TYPES, TEST_OBJ, types_of_test_obj

from hil.lwm2m import codecs, senml_cbor
from hil.lwm2m.model import CodecError, ObjLnk, Path


def test_instance_round_trip_every_type():
    payload = codecs.encode(ALL_TYPES, Path(TEST_OBJ, 0), codecs.SENML_CBOR)
    decoded = codecs.decode(payload, Path(TEST_OBJ, 0), codecs.SENML_CBOR, types_of_test_obj)
    assert decoded == ALL_TYPES
    assert {p: type(v) for p, v in decoded.items()} == {p: type(v) for p, v in ALL_TYPES.items()}


def test_encoded_records_use_the_cbor_labels():
    records = cbor2.loads(senml_cbor.encode_content(ALL_TYPES, Path(TEST_OBJ, 0)))
    assert records == [
        {-2: "/42000/0/", 0: "0", 2: -(2**63)},
        {0: "1", 2: 0.1},
        {0: "2", 3: "héllo ✓"},
        {0: "3", 4: False},
        {0: "4", 8: b"\xfb\xff\x00"},  # vd: a byte string, not base64
        {0: "5", 2: 1_700_000_000},
        {0: "6", "vlo": "3:0"},
        {0: "7/0", 2: 2**63 - 1},
        {0: "7/5", 2: 128},
    ]


def test_object_and_single_resource_round_trips():
    content = {Path(3303, i, r): v for i in (0, 1, 12) for r, v in ((5700, 21.5 + i), (5701, "Cel"))}
    assert senml_cbor.decode_content(senml_cbor.encode_content(content, Path(3303)), Path(3303)) == content
    package = {Path(9, 1, 2): bytes(range(256)) * 11}  # a service.json sized opaque value
    assert senml_cbor.decode_content(senml_cbor.encode_content(package, Path(9, 1, 2)), Path(9, 1, 2)) == package


def test_base_value_base_name_and_unknown_resources():
    payload = cbor2.dumps([{-2: "/3303/0/", -5: 20, 0: "5700", 2: 1.5}, {-2: "/42001/0/", 0: "1", 4: True},
                           {0: "2", 8: b"\x01"}, {0: "3", 2: 7}])
    assert senml_cbor.decode_content(payload, None) == {
        Path(3303, 0, 5700): 21.5, Path(42001, 0, 1): True, Path(42001, 0, 2): b"\x01", Path(42001, 0, 3): 27,  # bv stays in force
    }


def test_composite_paths_round_trip():
    paths = [Path(3, 0, 0), Path(3303, 0), Path(1)]
    assert codecs.decode_paths(codecs.encode_paths(paths, codecs.SENML_CBOR), codecs.SENML_CBOR) == paths
    assert codecs.decode_paths(codecs.encode_paths(paths, codecs.SENML_JSON), codecs.SENML_JSON) == paths
    with pytest.raises(CodecError, match="composite requests are SenML"):
        codecs.encode_paths(paths, codecs.TLV)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\xff", "SenML CBOR is not well-formed CBOR"),
        (b"\x83\x01", "SenML CBOR is not well-formed CBOR"),  # array of 3 with one item: truncated
        (cbor2.dumps({-2: "/3/0/0"}), "at offset 0: SenML CBOR pack must be a CBOR array"),
        (cbor2.dumps([1]), "record 0: a SenML record must be a CBOR map"),
        (cbor2.dumps([{-2: "/3/0/9", 99: 1}]), "record 0: unknown SenML CBOR label(s) 99"),
        (cbor2.dumps([{2: 1}]), "record 0: SenML record without name"),
        (cbor2.dumps([{-2: "/3/0/9", 3: "80"}]), "record 0 (/3/0/9): vs given but the resource is integer"),
        (cbor2.dumps([{-2: "/3/0/9", 2: 80.5}]), "record 0 (/3/0/9): integer resource needs an integral v"),
        (cbor2.dumps([{-2: "/3/0/9", 2: 1, 3: "1"}]), "record 0 (/3/0/9): a record carries one value"),
        (cbor2.dumps([{-2: "/9/0/2", 8: 5}]), "record 0 (/9/0/2): vd must be"),
        (cbor2.dumps([{-2: "/35003/0/27400", "vlo": "9-1"}]), "record 0 (/35003/0/27400): vlo must be"),
        (cbor2.dumps([{-2: 5, 3: "a"}]), "record 0: bn must be a string"),
        (cbor2.dumps([{-2: "/3/0", 3: "a"}]), "record 0: name '/3/0' must be an absolute resource"),
        (cbor2.dumps([{-2: "/3/0/0", 3: "a"}, {-2: "/3/0/0", 3: "b"}]), "record 1: /3/0/0 appears twice"),
    ],
)
def test_malformed_senml_cbor_names_the_record(payload, message):
    with pytest.raises(CodecError) as err:
        senml_cbor.decode_content(payload, None)
    assert message in str(err.value), str(err.value)


def test_composite_request_must_name_paths_without_values():
    with pytest.raises(CodecError, match="names paths only, got v"):
        senml_cbor.decode_paths(cbor2.dumps([{0: "/3/0/9", 2: 1}]))
    with pytest.raises(CodecError, match="at least one path"):
        senml_cbor.decode_paths(cbor2.dumps([]))


def test_objlnk_and_opaque_for_unknown_types_keep_their_field():
    payload = cbor2.dumps([{-2: "/42001/0/", 0: "1", "vlo": "9:1000"}])
    assert senml_cbor.decode_content(payload, None) == {Path(42001, 0, 1): ObjLnk(9, 1000)}
