"""Renode's profiler file, written here byte by byte from its documented layout, read by hil.metrics.

The writer below follows the layout in Renode's sources (Logging/Profiler:
ProfilerHeader.RegisterPeripherals and the entry classes, marshalled packed,
little-endian), not our parser; tests/integration/test_renode_metrics.py reads
files a real Renode wrote.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from hil.metrics import (
    DeviceMetrics,
    MetricsUnavailable,
    ProfileFormatError,
    ProfileParser,
    ProfileReader,
    Series,
    parse_profile,
    read_metrics_json,
    write_metrics_json,
)
from hil.metrics import plot

UART0 = ("uart0", 0x4000_4000, 0x4000_4FFF)
TIMER = ("timer0", 0x4000_0000, 0x4000_0FFF)
SRAM = ("sram", 0x2000_0000, 0x2003_FFFF)


def header(cpus: list[tuple[int, str]], peripherals: list[tuple[str, int, int]]) -> bytes:
    out = struct.pack("<i", len(cpus))
    for slot, name in cpus:
        out += struct.pack("<ii", slot, len(name)) + name.encode("ascii")
    out += struct.pack("<i", len(peripherals))
    for name, start, end in peripherals:
        out += struct.pack("<i", len(name)) + name.encode("ascii") + struct.pack("<QQ", start, end)
    return out


def head(ms: float, kind: int) -> bytes:
    return struct.pack("<qdB", 638_000_000_000_000_000 + int(ms * 10_000), ms, kind)  # real time in .NET ticks


def instructions(ms: float, slot: int, total: int) -> bytes:
    return head(ms, 0) + struct.pack("<iQ", slot, total)


def memory(ms: float, operation: int) -> bytes:
    return head(ms, 1) + struct.pack("<B", operation)  # 2 read, 3 write


def peripheral(ms: float, operation: int, address: int) -> bytes:
    return head(ms, 2) + struct.pack("<BQ", operation, address)  # 0 read, 1 write


def exception(ms: float, index: int) -> bytes:
    return head(ms, 3) + struct.pack("<Q", index)


def sample() -> bytes:
    """Two CPUs over 25 ms, with every kind of entry; the counts the tests expect are written next to them."""
    entries = [
        instructions(0.0, 0, 1_000),  # cpu0's first count: where it starts from
        instructions(0.0, 1, 50),
        memory(1.0, 2), memory(1.0, 2), memory(1.5, 3),  # 2 reads, 1 write in the first 10 ms
        peripheral(2.0, 1, 0x4000_4000),  # uart0 write
        peripheral(2.5, 0, 0x4000_4004),  # uart0 read
        peripheral(3.0, 0, 0x4000_4FFF),  # uart0 read: its last byte
        peripheral(3.5, 1, 0x4000_0010),  # timer0 write
        peripheral(4.0, 0, 0x5000_0000),  # nobody's
        exception(4.5, 5), exception(5.0, 5), exception(14.0, 2),
        instructions(5.0, 0, 1_500),  # +500
        instructions(5.0, 1, 80),  # +30
        memory(12.0, 3), memory(12.0, 3), memory(21.0, 2),
        instructions(15.0, 0, 2_500),  # +1000
        exception(21.0, 5),
        instructions(25.0, 0, 2_600),  # +100
    ]
    return header([(0, "cpu0"), (1, "cpu1")], [TIMER, UART0, SRAM]) + b"".join(entries)


def check_sample(m: DeviceMetrics) -> None:
    assert m.source == "Renode profiler"
    assert (m.start, m.end) == (0.0, 0.025)
    assert m.instructions_total("cpu0") == 1_600 and m.instructions_total("cpu1") == 30
    assert m.instructions_total() == 1_630
    assert m.instructions_per_second() == pytest.approx(1_630 / 0.025)
    assert (m.memory_accesses("read"), m.memory_accesses("write"), m.memory_accesses()) == (3, 3, 6)
    assert m.peripheral_accesses("uart0") == 3
    assert (m.peripheral_accesses("uart0", "write"), m.peripheral_accesses("uart0", "read")) == (1, 2)
    assert m.peripheral_accesses("timer0", "write") == 1
    assert m.peripheral_accesses("sram") == 0  # on the map, never accessed as a peripheral
    assert m.peripheral_accesses("(unmapped)") == 1
    assert m.exceptions() == {2: 1, 5: 3}
    assert m.exception_label(5) == "5 (interrupt)"
    assert [r.name for r in m.address_map] == ["sram", "timer0", "uart0"]
    # in virtual time: bins of 10 ms
    assert m.instruction_series["cpu0"].between(0.0, 0.01) == 500
    assert m.instruction_series["cpu0"].between(0.01, 0.03) == 1_100
    assert m.memory_series["write"].between(0.01, 0.02) == 2
    assert m.notes == []


def parse(data: bytes, chunk: int | None = None) -> ProfileParser:
    parser = ProfileParser("node1", bin_width=0.01)
    step = chunk or len(data)
    for at in range(0, len(data), step):
        parser.feed(data[at : at + step])
    return parser


def test_a_whole_file_gives_every_count_in_virtual_time(tmp_path: Path) -> None:
    path = tmp_path / "profile.bin"
    path.write_bytes(sample())
    check_sample(parse_profile(path, "node1", bin_width=0.01))


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 13, 17, 18, 26, 29, 64])
def test_fed_in_pieces_of_any_size_it_counts_the_same(chunk: int) -> None:
    parser = parse(sample(), chunk)
    assert parser.pending == 0
    check_sample(parser.metrics())


def test_a_file_read_while_it_grows_is_read_once_and_whole(tmp_path: Path) -> None:
    data = sample()
    path = tmp_path / "profile.bin"
    reader = ProfileReader(path, ProfileParser("node1", bin_width=0.01), chunk=10)
    assert reader.update() == 0  # not there yet: Renode writes nothing before its first entry
    with path.open("wb") as f:
        for cut in (5, 60, 200, 201, len(data) - 3, len(data)):  # in the header, in entries, mid-entry
            f.write(data[f.tell() : cut])
            f.flush()
            reader.update()
    assert reader.offset == len(data)
    check_sample(reader.parser.metrics())


def test_an_entry_cut_short_at_the_end_is_left_out_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "profile.bin"
    path.write_bytes(sample() + instructions(30.0, 0, 9_999)[:20])
    m = parse_profile(path, "node1", bin_width=0.01)
    assert m.instructions_total() == 1_630
    assert m.notes == [f"20 bytes at the end of {path} are an incomplete entry"]


def test_an_empty_file_has_no_metrics_yet(tmp_path: Path) -> None:
    path = tmp_path / "profile.bin"
    path.write_bytes(b"")
    m = parse_profile(path, "node1")
    assert m.notes == ["the profiler wrote nothing yet (no header)"]
    assert m.exceptions() == {} and m.memory_accesses() == 0


def test_bad_bytes_are_refused_naming_where() -> None:
    body = header([(0, "cpu")], [UART0])
    with pytest.raises(ProfileFormatError, match=r"unknown type 9 at byte 44 \(virtual time 1.0 ms\)"):
        parse(body + head(1.0, 9) + b"\0" * 12)
    with pytest.raises(ProfileFormatError, match="the number of CPUs is -3 at byte 0"):
        parse(struct.pack("<i", -3) + b"\0" * 40)
    with pytest.raises(ProfileFormatError, match="peripheral uart0 ends"):
        parse(header([(0, "cpu")], [("uart0", 0x5000, 0x4000)]))


def test_a_file_reader_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "not-a-profile.bin"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ProfileFormatError, match=f"{path}: profiler header"):
        ProfileReader(path, ProfileParser()).update()


def test_a_series_stays_bounded_and_exact_over_long_runs() -> None:
    series = Series(start=100.0, width=0.01, max_bins=64)
    for second in range(3600):  # an hour, one event a second
        series.add(100.0 + second + 0.5)
    assert len(series.counts) <= 64 and series.total == 3600
    assert series.width == pytest.approx(0.01 * 2**13)  # merged 13 times to hold an hour in 64 bins
    xs, ys = series.cumulative()
    assert (xs[0], ys[0], ys[-1]) == (100.0, 0, 3600)


def test_summaries_a_source_cannot_give_say_so() -> None:
    m = parse(sample()).metrics()
    with pytest.raises(MetricsUnavailable, match="counts per CPU and per peripheral, not per service"):
        m.instructions_per_period("temperature_sensor")
    with pytest.raises(MetricsUnavailable, match="no peripheral 'uart7'.*it has .*timer0, uart0"):
        m.peripheral_accesses("uart7")
    with pytest.raises(ValueError, match="kind='writes'"):
        m.peripheral_accesses("uart0", "writes")


def test_metrics_json_round_trip(tmp_path: Path) -> None:
    m = parse(sample()).metrics()
    path = tmp_path / "metrics.json"
    write_metrics_json(path, {"node1": m})
    again = read_metrics_json(path)["node1"]
    check_sample(again)
    assert json.loads(path.read_text())["nodes"]["node1"]["source"] == "Renode profiler"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a metrics file"):
        read_metrics_json(path)


@pytest.mark.skipif(not plot.available(), reason="matplotlib is not installed (the report extra)")
def test_the_renode_colab_plots_and_the_standalone_page(tmp_path: Path) -> None:
    m = parse(sample()).metrics()
    figures = plot.node_figures(m)
    assert [title for title, _ in figures] == ["executed instructions", "memory accesses",
                                               "peripheral accesses (writes, then reads)", "exceptions"]
    assert all(svg.startswith("<svg") for _, svg in figures)
    assert "uart0 (1)" in figures[2][1] and "5 (interrupt) (3)" in figures[3][1]  # legends: the counts
    page = tmp_path / "metrics.html"
    plot.write_metrics_page(page, {"node1": m}, "a <test>")
    text = page.read_text()
    assert text.count("<svg") == 4 and "a &lt;test&gt;" in text and "peripherals.uart0.read" in text


def test_the_metrics_command_reads_a_profile_and_a_metrics_json(tmp_path: Path, capsys) -> None:
    from hil.cli import main

    profile = tmp_path / "node1.bin"
    profile.write_bytes(sample())
    page = tmp_path / "page.html"
    assert main(["metrics", str(profile), "-o", str(page), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["node1"]
    assert summary["peripherals"]["uart0"] == {"read": 2, "write": 1} and summary["instructions"]["cpu0"] == 1_600
    assert "peripheral accesses" in page.read_text()
    write_metrics_json(tmp_path / "metrics.json", {"node7": parse(sample()).metrics()})
    assert main(["metrics", str(tmp_path / "metrics.json")]) == 0
    assert "exceptions: {'2 (SVC)': 1, '5 (interrupt)': 3}" in capsys.readouterr().out
    (tmp_path / "bad.bin").write_bytes(b"\xff" * 40)
    assert main(["metrics", str(tmp_path / "bad.bin")]) == 1
    assert "bad.bin: profiler header: the number of CPUs is -1 at byte 0" in capsys.readouterr().err
