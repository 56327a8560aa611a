"""The firmware's parsers under libFuzzer with AddressSanitizer and UBSan, on the host.

Three targets (tests/firmware_host/fuzz/): one CoAP datagram into the
endpoint of firmware/src/coap.c; any bytes through the TLV reader of tlv.c;
a service.json through the JSON tokenizer, the manifest reader, base64 and
the udynlink header parser, as Install runs them. Each starts from a seed
corpus of our own (valid messages, encodings and a built package, made
below) and runs for a few seconds with a fixed seed: long enough to go deep
from valid inputs, short enough for every CI run. Any crash, sanitizer
report, leak or timeout fails the test with libFuzzer's own report.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path as FsPath

import pytest

from hil.lwm2m import tlv
from hil.lwm2m.model import ObjLnk, Path

REPO = FsPath(__file__).resolve().parents[2]
FIRMWARE_SRC = REPO / "firmware" / "src"
FUZZ_DIR = REPO / "tests" / "firmware_host" / "fuzz"
SECONDS = 4  # per target
TARGETS = {
    "coap": ["coap.c"],
    "tlv": ["tlv.c"],
    "json": ["runtime/json.c", "runtime/manifest.c", "runtime/base64.c", "runtime/udlm.c"],
}


def coap(code: int, mid: int, options: list[tuple[int, bytes]], payload: bytes = b"", mtype: int = 0, token: bytes = b"\x7e") -> bytes:
    out, last = bytearray([0x40 | mtype << 4 | len(token), code, mid >> 8, mid & 0xFF]) + token, 0
    for number, value in options:
        delta, length = number - last, len(value)
        out += bytes([(delta if delta < 13 else 13) << 4 | (length if length < 13 else 13)])
        out += bytes([delta - 13]) if delta >= 13 else b""
        out += bytes([length - 13]) if length >= 13 else b""
        out += value
        last = number
    return bytes(out + (b"\xff" + payload if payload else b""))


def seeds(target: str, package: bytes | None) -> list[bytes]:
    if target == "coap":
        return [
            coap(1, 1, [(11, b"3"), (11, b"0"), (11, b"17")]),
            coap(1, 2, [(6, b""), (11, b"3303"), (11, b"0"), (11, b"5700"), (17, b"\x00")]),
            coap(2, 3, [(11, b"9"), (12, b"\x2d\x16")], tlv.frame(tlv.Kind.OBJECT_INSTANCE, 1000, b"")),
            coap(3, 4, [(11, b"9"), (11, b"1000"), (11, b"2"), (27, b"\x0e")], b"{" * 1024),
            coap(3, 5, [(11, b"1"), (11, b"0"), (15, b"pmin=1"), (15, b"pmax=9")]),
            coap(4, 6, [(11, b"9"), (11, b"1000")]),
            coap(1, 7, [(11, b"3"), (23, b"\x16")], mtype=1),
            bytes([0x40, 0x00, 0x00, 0x08]), bytes([0x70, 0x00, 0x00, 0x09]), bytes([0x60, 0x45, 0x00, 0x0A, 0x7E]),
        ]
    if target == "tlv":
        device = {Path(3, 0, 0): "embserve-hil", Path(3, 0, 11, 0): 0, Path(3, 0, 13): 1700000000, Path(3, 0, 21): 256}
        monitor = {Path(35003, 1, 27400): ObjLnk(9, 1000), Path(35003, 1, 27401): "0.3"}
        return [tlv.encode_content(device, Path(3, 0)), tlv.encode_content(monitor, Path(35003)),
                tlv.encode_content({Path(3303, 0, 5700): 21.5, Path(3303, 0, 5701): "Cel"}, Path(3303))]
    docs = [b'{"name":"t","version":1,"service":"VURMTQ==","dependencies":{"sdk_api":1},"inputs":[],"outputs":[]}',
            b'{"a":[1,2.5,-3e4,true,false,null,{"b":"\\u00e9\\n"}]}']
    return docs + ([package] if package else [])


def build(target: str, out: FsPath) -> FsPath:
    sources = [str(FUZZ_DIR / f"fuzz_{target}.c"), *(str(FIRMWARE_SRC / s) for s in TARGETS[target])]
    binary = out / f"fuzz_{target}"
    run = subprocess.run(
        ["clang", "-std=gnu11", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
         "-Wno-int-to-pointer-cast", f"-I{FIRMWARE_SRC}", *sources, "-o", str(binary), "-lm"],
        capture_output=True, text=True, timeout=300,
    )
    if run.returncode != 0 and ("libclang_rt.fuzzer" in run.stderr or "cannot find" in run.stderr):
        pytest.skip(f"clang has no libFuzzer runtime here (apt package libclang-rt-dev): {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, f"building the {target} fuzzer failed:\n{run.stderr}"
    return binary


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes | None:
    from hil.sdk import BuildError, build_service

    try:
        return build_service(REPO / "services" / "temperature_sensor", tmp_path_factory.mktemp("pkg")).read_bytes()
    except BuildError:
        return None  # the JSON target still has its hand-made seeds


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_firmware_parser_survives_libfuzzer(target: str, tmp_path: FsPath, package: bytes | None) -> None:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (apt package clang): cannot build the libFuzzer targets")
    binary = build(target, tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(seeds(target, package)):
        (corpus / f"seed{i}").write_bytes(seed)
    run = subprocess.run(
        [str(binary), str(corpus), f"-max_total_time={SECONDS}", "-seed=12", "-timeout=5", "-rss_limit_mb=2048",
         "-max_len=4096", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=SECONDS + 120, cwd=tmp_path,
    )
    report = run.stderr[-6000:]
    assert run.returncode == 0, f"libFuzzer found a problem in the firmware's {target} parser:\n{report}"
    runs = int(next(line.split()[-1] for line in run.stderr.splitlines() if line.startswith("stat::number_of_executed_units")))
    assert runs > 1000, f"only {runs} inputs ran:\n{report}"
