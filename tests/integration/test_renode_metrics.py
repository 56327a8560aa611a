"""Renode's execution metrics on a real Renode: the profiler's file of the reference firmware, parsed.

Skipped without Renode (marker ``requires_renode``). One test drives the
profiler by hand through the monitor and checks the parsed instruction count
against Renode's own counter (``cpu ExecutedInstructions``); the other runs
the Renode target with metrics on, as ``--hil-metrics`` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import firmware_elf as build_firmware

from hil.boards import get_board
from hil.metrics import ProfileParser, parse_profile
from hil.targets.base import TargetConfig
from hil.targets.renode import RenodeTarget

pytestmark = [pytest.mark.emulation, pytest.mark.requires_renode]

QUANTUM = 10_000  # instructions Renode runs between two counts at its defaults (100 MIPS, 100 µs)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_firmware(tmp_path_factory, qemu=False)  # skips without the ARM toolchain


def renode_target(log_dir: Path, firmware: Path, **options) -> RenodeTarget:
    return RenodeTarget(TargetConfig(endpoint="node1", log_dir=log_dir, board=get_board("mps2_an385"),
                                     firmware=firmware, options=options))


def counter(text: str) -> int:
    return int(text.strip().splitlines()[-1], 0)  # the monitor prints e.g. 0x000000000016C150


async def test_parsed_instructions_match_renodes_own_counter(firmware: Path, tmp_path: Path) -> None:
    profile = tmp_path / "profile.bin"
    async with renode_target(tmp_path, firmware) as target:
        await target.command("pause")
        before = counter(await target.command("sysbus.cpu ExecutedInstructions"))
        await target.command(f'machine EnableProfiler "{profile}"')
        await target.command('emulation RunFor "00:00:01"')  # the machine stays paused after it
        after = counter(await target.command("sysbus.cpu ExecutedInstructions"))
        await target.command('machine EnableProfiler "/dev/null"')  # closes the file
        await target.command("start")
    m = parse_profile(profile, "node1")
    assert m.notes == []
    assert 0 <= (after - before) - m.instructions_total("cpu") <= QUANTUM, (before, after, m.instructions_total())
    assert m.duration == pytest.approx(1.0, abs=0.001)
    # The header's address map is the platform's (renode/mps2_an385.repl).
    assert {(r.name, r.start, r.end) for r in m.address_map} >= {
        ("uart0", 0x4000_4000, 0x4000_4FFF), ("uart1", 0x4000_5000, 0x4000_5FFF), ("nvic", 0xE000_E000, 0xE000_EFFF)}
    assert m.exceptions().get(5, 0) >= 900  # SysTick at 1 kHz (and UART interrupts): ARM's "interrupt"
    # Read in pieces that cut entries anywhere, the same file counts the same.
    parser = ProfileParser("node1")
    data = profile.read_bytes()
    for at in range(0, len(data), 4093):
        parser.feed(data[at : at + 4093])
    again = parser.metrics()
    assert (again.instructions_total(), again.memory_accesses(), again.exceptions()) == (
        m.instructions_total(), m.memory_accesses(), m.exceptions())


async def test_the_renode_target_records_metrics_while_the_node_works(firmware: Path, tmp_path: Path) -> None:
    target = renode_target(tmp_path, firmware, metrics=True)
    async with target:
        lines = await target.shell.exec("help")  # console traffic: uart0 reads and writes
        assert lines
        await target.sleep_device(1.0)
        live = await target.metrics()  # while it runs: what the file holds so far
        assert live.instructions_total() > 0
    m = await target.metrics()  # after stop: the profiler's file closed, complete
    assert m.notes == []
    assert m.duration >= 1.0 and m.instructions_total() >= live.instructions_total()
    assert m.peripheral_accesses("uart0", "write") > 100  # the help text went out on the console
    assert m.peripheral_accesses("uart0", "read") > 0
    assert m.exceptions()[5] >= 900
    whole = parse_profile(tmp_path / "node1.renode-profile.bin", "node1")
    assert whole.instructions_total() == m.instructions_total()
    assert whole.peripheral_accesses("uart0") == m.peripheral_accesses("uart0")
