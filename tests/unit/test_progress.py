"""Progress of long waits (hil.progress): when a wait is told, how often, and what stays quiet.

The thresholds are shortened for the test; lines go to a list instead of a terminal.
"""

from __future__ import annotations

import asyncio

import pytest

from hil import progress


@pytest.fixture
def lines(monkeypatch) -> list[str]:
    monkeypatch.setattr(progress, "QUIET_FOR", 0.2)
    monkeypatch.setattr(progress, "EVERY", 0.5)
    monkeypatch.setattr(progress, "TICK", 0.05)
    said: list[str] = []
    previous = progress.set_sink(said.append)
    yield said
    progress.set_sink(previous)


async def test_a_short_wait_says_nothing(lines):
    with progress.waiting("a quick thing", timeout=1):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    assert lines == []


async def test_a_long_wait_is_told_once_then_every_few_seconds(lines):
    with progress.waiting("the first reading of node1", timeout=30):
        await asyncio.sleep(1.1)
    count = len(lines)
    await asyncio.sleep(0.3)
    assert len(lines) == count, "still told after the wait ended"
    assert count == 2, lines  # at 0.2 s, then 0.5 s later
    assert lines[0] == "embserve-hil: waiting for the first reading of node1 (0 s of 30 s)"


async def test_a_wait_inside_another_stays_quiet(lines):
    with progress.waiting("node1 to boot on qemu"):
        with progress.waiting("node1 console: a line matching 'uart:~\\$'"):
            await asyncio.sleep(0.3)
    assert lines and all("node1 to boot on qemu" in line and "console" not in line for line in lines), lines


async def test_waits_at_the_same_time_share_one_line(lines):
    async def boot(name: str) -> None:
        with progress.waiting(f"{name} to boot"):
            await asyncio.sleep(0.3)

    await asyncio.gather(*(boot(f"node{i}") for i in range(1, 6)))
    assert lines[0].startswith("embserve-hil: waiting for 5 things: node1 to boot (0 s); node2 to boot (0 s);")
    assert lines[0].endswith("; and 2 more"), lines


async def test_a_failing_sink_does_not_break_the_wait(lines, caplog):
    def broken(line: str) -> None:
        raise OSError("terminal gone")

    progress.set_sink(broken)
    with progress.waiting("something slow"):
        await asyncio.sleep(0.3)
    assert "progress sink" in caplog.text and "terminal gone" in caplog.text


def test_outside_an_event_loop_nothing_is_scheduled(lines):
    with progress.waiting("a blocking call") as wait:
        assert wait.what == "a blocking call"
    assert lines == [] and progress._tickers == {}
