"""Host-compiled unit tests of the firmware service runtime's portable C code.

tests/firmware_host/test_runtime_host.c is built natively with gcc (address and
undefined-behaviour sanitizers on) against firmware/src/runtime/{json,base64,
manifest,udlm,fmt,pool}.c; each C test runs as its own pytest case.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FITA_SERVICE, REPO

RUNTIME = REPO / "firmware" / "src" / "runtime"
SOURCE = REPO / "tests" / "firmware_host" / "test_runtime_host.c"
UNITS = ("json.c", "base64.c", "manifest.c", "udlm.c", "fmt.c", "pool.c")

# Test table entries in the C file: {"name", test_fn, needs_fita}.
_CASE = re.compile(r'\{"(\w+)", test_\w+, ([01])\}')
CASES = [(name, needs == "1") for name, needs in _CASE.findall(SOURCE.read_text())]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: install the Debian package gcc to run the firmware host tests")
    exe = tmp_path_factory.mktemp("firmware_host") / "test_runtime_host"
    command = [
        gcc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        f"-I{RUNTIME}", str(SOURCE), *(str(RUNTIME / unit) for unit in UNITS), "-o", str(exe),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"compiling the host tests failed:\n{result.stderr}"
    return exe


def test_every_c_case_is_collected(runner: Path) -> None:
    listed = subprocess.run([str(runner), "list"], capture_output=True, text=True, check=True).stdout.split("\n")
    names = {line.split()[0] for line in listed if line.strip()}
    assert names == {name for name, _ in CASES}


@pytest.mark.parametrize("name,needs_fita", CASES, ids=[name for name, _ in CASES])
def test_runtime_c(runner: Path, name: str, needs_fita: bool) -> None:
    args = [str(runner), name]
    if needs_fita:
        if not FITA_SERVICE.is_file():
            pytest.skip(f"FITA service package not found at {FITA_SERVICE} (shared/ is not laid out next to the repo)")
        args.append(str(FITA_SERVICE))
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"
    assert f"{name}: ok" in result.stdout
