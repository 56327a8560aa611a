"""The codecs under a fuzzer: whatever bytes come in, the answer is a value or the codec's own precise error.

Hypothesis drives each decoder with bytes of its own making and with
mutations of a seed corpus (real encodings: a device read, registration
links, a service package and its module), under a fixed seed and a bounded
number of examples, so a CI run costs seconds and fails the same way twice.
Anything else escaping (IndexError, struct.error, RecursionError, ...) is a
bug in the codec. Round trips check the encoders against the decoders.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path as FsPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.lwm2m import codecs, tlv
from hil.lwm2m.codecs import SENML_JSON, TEXT, TLV
from hil.lwm2m.link import format_links, parse_links
from hil.lwm2m.model import LwM2MError, ObjLnk, Path
from hil.service.manifest import ManifestError, parse_manifest
from hil.service.udlm import ModuleFormatError, parse_module

REPO = FsPath(__file__).resolve().parents[2]
FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DEVICE = {Path(3, 0, 0): "embserve-hil", Path(3, 0, 1): "mps2-an385", Path(3, 0, 11, 0): 0,
          Path(3, 0, 13): 1700000000, Path(3, 0, 17): "embServe Node", Path(3, 0, 21): 256}
MONITOR = {Path(35003, 1, 27400): ObjLnk(9, 1000), Path(35003, 1, 27401): "0.3", Path(35003, 1, 27404): ""}
TEMPERATURE = {Path(3303, 0, 5700): 21.5, Path(3303, 0, 5701): "Cel", Path(3303, 1, 5700): -4.25}
LINKS = b'</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>,</9>,</15/0>,</3303/0>,</35003/0>,</35003/1>'


def corpus() -> list[tuple[str, bytes, Path]]:
    """(codec, encoding, base path): valid inputs the mutations start from."""
    return [
        ("tlv", tlv.encode_content(DEVICE, Path(3, 0)), Path(3, 0)),
        ("tlv", tlv.encode_content(MONITOR, Path(35003)), Path(35003)),
        ("tlv", tlv.encode_content(TEMPERATURE, Path(3303)), Path(3303)),
        ("senml", codecs.encode(DEVICE, Path(3, 0), SENML_JSON), Path(3, 0)),
        ("senml", codecs.encode(TEMPERATURE, Path(3303), SENML_JSON), Path(3303)),
        ("text", b"21.5", Path(3303, 0, 5700)),
    ]


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with bytes flipped, cut, duplicated or inserted."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 6))):
            op = draw(st.integers(0, 3))
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if op == 0 and data:
                data[at] = draw(st.integers(0, 255))
            elif op == 1:
                del data[at : at + draw(st.integers(1, 8))]
            elif op == 2:
                data[at:at] = data[at : at + draw(st.integers(1, 16))]
            else:
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
        return bytes(data)

    return build()


# ------------------------------------------------------------------ LwM2M content codecs

BASES = [Path(3), Path(3, 0), Path(3, 0, 11), Path(9, 1000), Path(3303), Path(35003, 1), Path(3303, 0, 5700), Path(40000)]


@FUZZ
@given(payload=st.one_of(st.binary(max_size=200), mutated([c[1] for c in corpus() if c[0] == "tlv"])),
       base=st.sampled_from(BASES))
def test_tlv_decoder_takes_any_bytes(payload: bytes, base: Path) -> None:
    try:
        content = codecs.decode(payload, base, TLV)
    except LwM2MError:
        return
    assert all(isinstance(p, Path) and base.contains(p) for p in content), content


@FUZZ
@given(payload=st.one_of(st.binary(max_size=200), st.text(max_size=120).map(str.encode),
                         mutated([c[1] for c in corpus() if c[0] == "senml"])),
       base=st.sampled_from(BASES))
def test_senml_decoder_takes_any_bytes(payload: bytes, base: Path) -> None:
    try:
        codecs.decode(payload, base, SENML_JSON)
    except LwM2MError:
        pass


@FUZZ
@given(payload=st.one_of(st.binary(max_size=40), mutated([b"21.5", b"-7", b"true", b"9:1000", b"embServe Node"])),
       base=st.sampled_from([Path(3303, 0, 5700), Path(3, 0, 13), Path(9, 0, 12), Path(35003, 1, 27400), Path(3, 0, 17)]))
def test_text_decoder_takes_any_bytes(payload: bytes, base: Path) -> None:
    try:
        codecs.decode(payload, base, TEXT)
    except LwM2MError:
        pass


@FUZZ
@given(payload=st.one_of(st.binary(max_size=160), mutated([LINKS, b"</9/1000>;ver=1.1", b'</a>;x="y,z"'])))
def test_link_format_parser_takes_any_bytes(payload: bytes) -> None:
    try:
        links = parse_links(payload)
    except LwM2MError:
        return
    assert parse_links(format_links(links)) == links  # what it read, it writes back the same


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
values = st.one_of(st.integers(-(2**63), 2**63 - 1), finite, st.text(max_size=30), st.booleans(),
                   st.builds(ObjLnk, st.integers(0, 65534), st.integers(0, 65534)))


@FUZZ
@given(values=st.dictionaries(st.integers(0, 65534), values, min_size=1, max_size=6), fmt=st.sampled_from([TLV, SENML_JSON]))
def test_encode_then_decode_gives_the_same_content(values: dict[int, object], fmt: int) -> None:
    # an object no model knows: the types come from the values themselves
    content = {Path(40000, 0, res): value for res, value in values.items()}
    types = {Path(40000, 0, res): tlv.infer_type(value, Path(40000, 0, res)) for res, value in values.items()}
    back = codecs.decode(codecs.encode(content, Path(40000, 0), fmt), Path(40000, 0), fmt,
                         lambda p: types.get(Path(p.obj, p.inst, p.res)))
    assert set(back) == set(content)
    for path, value in content.items():
        got = back[path]
        if isinstance(value, float):
            assert got == value or (math.isclose(got, value, rel_tol=1e-15)), (value, got)
        else:
            assert got == value, (path, value, got)


# ------------------------------------------------------------------ service packages

@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The project's temperature service, built: the seed of the package mutations."""
    from hil.sdk import BuildError, build_service

    try:
        return build_service(REPO / "services" / "temperature_sensor", tmp_path_factory.mktemp("seed")).read_bytes()
    except BuildError as e:
        pytest.skip(f"cannot build the seed package: {e}")


def test_manifest_and_module_parsers_take_mutations_of_a_real_package(package: bytes) -> None:
    module = base64.b64decode(json.loads(package)["service"])

    @FUZZ
    @given(blob=st.one_of(st.binary(max_size=120), mutated([module])))
    def module_parser(blob: bytes) -> None:
        try:
            parsed = parse_module(blob)
        except ModuleFormatError:
            return
        assert parse_module(parsed.pack()) == parsed  # what it accepted, it writes back and reads the same

    @FUZZ
    @given(doc=st.one_of(st.binary(max_size=120), mutated([package]),
                         mutated([module]).map(lambda m: json.dumps({**json.loads(package), "service": base64.b64encode(m).decode()}).encode())))
    def manifest_parser(doc: bytes) -> None:
        try:
            parse_manifest(doc, source="fuzz")
        except ManifestError:
            pass

    module_parser()
    manifest_parser()
