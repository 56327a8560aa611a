"""Faults named by source line: DWARF lookups on known offsets, and the console reports of each backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hil.console import Console
from hil.faults import FaultWatcher, note_service
from hil.resources import service_dir
from hil.sdk import build_service
from hil.service.manifest import parse_manifest
from hil.service.symbols import symbols

FAULT_LINE = 47  # services/faulty_sensor/service.c: histogram[bucket]++


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed: apt-get install gcc-arm-none-eabi")
    out = tmp_path_factory.mktemp("faulty_sensor")
    service_json = build_service(service_dir("faulty_sensor"), out)
    return out / "service.elf", parse_manifest(service_json.read_bytes()).service


def _offset_of_line(elf, line: int) -> int:
    rows = [row for row in elf._lines if Path(row[2]).name == "service.c" and row[3] == line]
    assert rows, f"no line-table row for service.c:{line}"
    return rows[0][0]


def test_known_offsets_resolve_to_function_and_line(faulty) -> None:
    elf = symbols(faulty[0])
    loop = elf.function_address("loop")
    assert loop is not None
    start = elf.locate(loop)
    assert (start.function, Path(start.file).name) == ("loop", "service.c")
    store = _offset_of_line(elf, FAULT_LINE)
    at = elf.locate(store | 1)  # a Thumb address names the same instruction
    assert (at.function, Path(at.file).name, at.line) == ("loop", "service.c", FAULT_LINE)
    assert str(at) == f"loop() at {at.file}:{FAULT_LINE}"
    assert elf.locate(0x7FFF_0000).function is None  # past every function: nothing is made up


def test_firmware_service_fault_line_is_symbolized_with_its_registers(faulty, tmp_path: Path) -> None:
    elf, module = faulty
    note_service("faulty_sensor", module)
    store = _offset_of_line(symbols(elf), FAULT_LINE)
    console = Console("node1 console", tmp_path / "node1.console.log")
    watcher = FaultWatcher("node1", console)
    for line in (f"[faulty_sensor] service faulted in setup/loop: BusFault PRECISERR pc=+0x{store:x} addr=0xf05241a8\n",
                 "uart:~$ \n",
                 "[faulty_sensor]   r0=0xf4143e40 r1=0x80000000 r2=0x200148a8 r3=0x0000002c\n",
                 "[faulty_sensor]   r12=0x00000002 lr=0x20014c01 pc=0x20014c06 xpsr=0xa1000000\n"):
        console.feed(line)
    (fault,) = watcher.faults
    assert (fault.location["function"], fault.location["line"]) == ("loop", FAULT_LINE)
    assert fault.registers["pc"] == 0x20014C06 and fault.registers["r3"] == 0x2C and len(fault.registers) == 8
    console.close()
    log = (tmp_path / "node1.console.log").read_text()
    assert f"[embserve-hil] fault: service faulty_sensor at loop() at" in log and f"service.c:{FAULT_LINE}" in log


def test_simulator_fault_line_carries_its_source_line(tmp_path: Path) -> None:
    console = Console("node1 console")
    watcher = FaultWatcher("node1", console)
    console.feed("[00:00:04.938,788] <err> embserve: service faulty_sensor (/9/1000) stopped: bad memory access: read of"
                 " 4 bytes at unmapped address 0xd0612948 by the instruction at PC=0x0010115e (code+0x15e) [in loop()];"
                 " source line: loop() at service.c:47\n")
    console.feed("[00:00:04.940,000] <err> embserve:   r12=0x00000002 sp=0x00105f88 lr=0x00101159 pc=0x0010115e\n")
    (fault,) = watcher.faults
    assert fault.signature() == ("service", "faulty_sensor", "service.c", 47)
    assert fault.registers["pc"] == 0x0010115E


def test_firmware_hardfault_dump_names_function_and_line(tmp_path: Path) -> None:
    from conftest import FIRMWARE_DIR

    firmware = FIRMWARE_DIR / "build" / "embserve.elf"
    if not firmware.is_file():
        pytest.skip(f"{firmware} is not built (make -C firmware)")
    elf = symbols(firmware)
    pc = elf.function_address("rt_install")
    lr = elf.function_address("rt_fault_init")
    console = Console("node1 console")
    watcher = FaultWatcher("node1", console, lambda: firmware)
    for line in ("*** FATAL UsageFault UNDEFINSTR in handler mode ***",
                 "r0=0x00000001 r1=0x00000002 r2=0x00000003 r3=0x00000004",
                 f"r12=0x00000005 lr=0x{lr | 1:08x} pc=0x{pc + 4:08x} xpsr=0x21000000",
                 "r4=0x0 r5=0x0 r6=0x0 r7=0x0", "r8=0x0 r9=0x0 r10=0x0 r11=0x0",
                 "sp=0x20001f00 exc_return=0xfffffff1 cfsr=0x00010000",
                 "hfsr=0x00000000 mmfar=0xe000edf8 bfar=0xe000edf8", "resetting"):
        console.feed(line + "\n")
    (fault,) = watcher.faults
    assert fault.kind == "firmware" and fault.location["function"] == "rt_install"
    assert Path(fault.location["file"]).name == "runtime.c" and fault.location["line"]
    assert "called from rt_fault_init()" in fault.message
    assert fault.registers["cfsr"] == 0x10000
