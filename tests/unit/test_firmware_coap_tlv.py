"""The firmware's CoAP endpoint and TLV codec, compiled natively and run on the host.

tests/firmware_host/coap_tlv_test.c exercises firmware/src/coap.c and tlv.c
(parsing, retransmission, dedup, Block1/Block2, Observe, malformed input) with
a fake transport; it runs under AddressSanitizer/UBSan when the compiler has
them. Its TLV output is also decoded with the project's Python codec, so the
two implementations are checked against each other.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path as FsPath

import pytest

from hil.lwm2m import tlv
from hil.lwm2m.model import ObjLnk, Path, ResourceType

REPO = FsPath(__file__).resolve().parents[2]
FIRMWARE_SRC = REPO / "firmware" / "src"
TEST_SOURCE = REPO / "tests" / "firmware_host" / "coap_tlv_test.c"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


def _compile(out: FsPath, flags: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [
        "gcc", "-std=gnu11", "-g", "-O0", "-Wall", "-Wextra", "-Werror", *flags,
        f"-I{FIRMWARE_SRC}", str(TEST_SOURCE), str(FIRMWARE_SRC / "coap.c"), str(FIRMWARE_SRC / "tlv.c"),
        "-o", str(out), "-lm",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def test_binary(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the firmware's host tests")
    out = tmp_path_factory.mktemp("fw-host") / "coap_tlv_test"
    built = _compile(out, SANITIZE)
    if built.returncode != 0 and "sanitize" in built.stderr:
        built = _compile(out, [])  # a compiler without sanitizer runtimes still runs the checks
    assert built.returncode == 0, f"host build of coap.c/tlv.c failed:\n{built.stderr}"
    return out


def test_firmware_coap_and_tlv_checks_pass_on_host(test_binary: FsPath) -> None:
    run = subprocess.run([str(test_binary)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"host tests failed:\n{run.stdout}\n{run.stderr}"
    assert run.stdout.strip().endswith(", 0 failed"), run.stdout
    checks = int(run.stdout.split()[0])
    assert checks > 1000, f"suspiciously few checks ran: {run.stdout}"


def _encodings(test_binary: FsPath) -> dict[str, bytes]:
    run = subprocess.run([str(test_binary), "tlv-hex"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return {name: bytes.fromhex(hexed) for name, hexed in (line.split() for line in run.stdout.splitlines())}


def test_firmware_tlv_encodings_decode_with_the_python_codec(test_binary: FsPath) -> None:
    enc = _encodings(test_binary)

    device = tlv.decode_content(enc["device"], Path(3, 0))
    assert device == {
        Path(3, 0, 0): "embserve-hil",
        Path(3, 0, 1): "mps2-an385",
        Path(3, 0, 11, 0): 0,
        Path(3, 0, 13): 1700000000,
        Path(3, 0, 17): "embServe Node",
    }

    temperature = tlv.decode_content(enc["temperature"], Path(3303))
    assert temperature[Path(3303, 0, 5700)] == -12.25
    assert temperature[Path(3303, 1, 5700)] == 0.1  # 8-byte float: exact
    assert temperature[Path(3303, 1, 5701)] == "Cel"

    monitor = tlv.decode_content(enc["monitor"], Path(35003, 1))
    assert monitor == {Path(35003, 1, 27400): ObjLnk(9, 1000), Path(35003, 1, 27401): "0.3"}

    def software_types(path: Path) -> ResourceType:
        return ResourceType.BOOLEAN if path.res == 12 else ResourceType.INTEGER

    software = tlv.decode_content(enc["software"], Path(9, 1000), software_types)
    assert software == {
        Path(9, 1000, 7): 4,
        Path(9, 1000, 9): -300,
        Path(9, 1000, 1): 100000,
        Path(9, 1000, 2): 5000000000,
        Path(9, 1000, 12): True,
    }
    # and the firmware picks the shortest integer width, as the Python encoder does
    assert enc["software"] == b"".join(
        tlv.frame(tlv.Kind.RESOURCE, rid, tlv.encode_int(v)) for rid, v in ((7, 4), (9, -300), (1, 100000), (2, 5000000000))
    ) + tlv.frame(tlv.Kind.RESOURCE, 12, b"\x01")
