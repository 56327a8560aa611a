"""Renode's execution metrics: the file ``machine EnableProfiler "FILE"`` writes, read as it grows.

The layout, from Renode's sources (``Logging/Profiler``; checked on Renode
1.16.1), all little-endian:

Header, written before the first entry::

    int32 cpu_count, then per CPU:        int32 slot, int32 name_length, ASCII name
    int32 peripheral_count, then each:    int32 name_length, ASCII name, uint64 start, uint64 end (inclusive)

  (the machine's peripherals registered on the system bus by address range:
  memories and devices alike, e.g. ``uart0`` 0x40004000-0x40004FFF; a
  peripheral registered in several ranges appears once per range, as
  ``region@name``.)

Entries, back to back, each a 17-byte head and a payload by type::

    int64 real time (.NET ticks, 100 ns), float64 virtual time (ms since the emulation started), uint8 type
    0 executed instructions:  int32 cpu slot, uint64 instructions the CPU executed since it was created
    1 memory access:          uint8 operation (2 read, 3 write)
    2 peripheral access:      uint8 operation (0 read, 1 write), uint64 physical address
    3 exception:              uint64 the CPU's exception index

Renode logs every memory and peripheral access of the CPU (instruction
fetches excepted), an instructions entry after each slice of execution
(every 100 µs of virtual time at its defaults), and an exception entry as
the CPU enters each one. Exception indices are the CPU model's: on ARM
(tlib's ``EXCP_*``) 5 is an interrupt (any IRQ, SysTick included), 2 an SVC,
1 an undefined instruction, 3 and 4 aborts, 7 a breakpoint.

:class:`ProfileParser` takes the bytes in chunks of any size and keeps only
the counts, binned in virtual time (:class:`~hil.metrics.series.Series`), so its
memory does not grow with the file; :class:`ProfileReader` feeds it what was
appended to a file since the last call. Instructions are the growth of each
CPU's cumulative count, from its first entry in the file: what the CPU ran in
the slice before that entry is not counted.
"""

from __future__ import annotations

import bisect
import struct
from pathlib import Path

from .device import DeviceMetrics, PeripheralRange
from .series import Series

INSTRUCTIONS, MEMORY, PERIPHERAL, EXCEPTION = 0, 1, 2, 3
ENTRY_SIZE = {INSTRUCTIONS: 29, MEMORY: 18, PERIPHERAL: 26, EXCEPTION: 25}
MEMORY_READ, MEMORY_WRITE = 2, 3
IO_READ, IO_WRITE = 0, 1
#: exception indices of Renode's ARM CPUs (tlib arch/arm/cpu.h)
ARM_EXCEPTIONS = {1: "undefined instruction", 2: "SVC", 3: "prefetch abort", 4: "data abort", 5: "interrupt",
                  6: "FIQ", 7: "breakpoint", 9: "kernel trap", 10: "STREX", 17: "NOCP usage fault",
                  18: "INVSTATE usage fault", 19: "secure fault"}
UNMAPPED = "(unmapped)"
CHUNK = 1 << 20
_MAX_NAME = 4096
_MAX_COUNT = 1 << 16

_INT = struct.Struct("<i")
_RANGE = struct.Struct("<QQ")
_HEAD = struct.Struct("<8xdBB")  # virtual time, type, first payload byte
_INSTRUCTIONS = struct.Struct("<iQ")
_U64 = struct.Struct("<Q")


class ProfileFormatError(ValueError):
    """The bytes are not a Renode profiler file; the message says where and what was found."""


class ProfileParser:
    """Streaming parser of a profiler file: :meth:`feed` chunks, :meth:`metrics` whenever wanted."""

    def __init__(self, endpoint: str = "", *, source: str = "Renode profiler", bin_width: float = 0.01):
        self.endpoint = endpoint
        self.source = source
        self.bin_width = bin_width
        self.bytes_parsed = 0
        self.entries = 0
        self.cpus: dict[int, str] = {}
        self.ranges: list[PeripheralRange] = []
        self._starts: list[int] = []
        self._pending = b""
        self._header_done = False
        self._start: float | None = None  # virtual seconds of the first entry
        self._last_time = 0.0
        self._instructions: dict[str, Series] = {}
        self._memory: dict[str, Series] = {}
        self._peripherals: dict[tuple[str, str], Series] = {}
        self._exceptions: dict[int, Series] = {}
        self._cumulative: dict[int, int] = {}  # cpu slot -> its count at its last entry
        self._names: dict[int, str] = {}  # address -> peripheral name, as met

    # -- input -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        buf = self._pending + data if self._pending else bytes(data)
        at = 0
        if not self._header_done:
            at = self._header(buf)
            if at < 0:
                self._pending = buf
                return
        at = self._entries(buf, at)
        self._pending = buf[at:]
        self.bytes_parsed += at  # buf starts where the bytes parsed so far end

    @property
    def pending(self) -> int:
        """Bytes of an incomplete header or entry at the end of what was fed (a file still being written)."""
        return len(self._pending)

    def _header(self, buf: bytes) -> int:
        """Parses the header; its length, or -1 when ``buf`` does not hold all of it yet."""
        at = 0
        n = len(buf)

        def count(what: str) -> int:
            nonlocal at
            if at + 4 > n:
                raise _Short
            (value,) = _INT.unpack_from(buf, at)
            if not 0 <= value <= _MAX_COUNT:
                raise ProfileFormatError(f"profiler header: {what} is {value} at byte {at}; not a Renode profiler file?")
            at += 4
            return value

        def name(what: str) -> str:
            nonlocal at
            length = count(f"length of {what}")
            if length > _MAX_NAME or at + length > n:
                if length > _MAX_NAME:
                    raise ProfileFormatError(f"profiler header: {what} is {length} bytes long at byte {at - 4}")
                raise _Short
            raw = buf[at : at + length]
            at += length
            try:
                return raw.decode("ascii")
            except UnicodeDecodeError:
                raise ProfileFormatError(f"profiler header: {what} at byte {at - length} is not ASCII: {raw[:40]!r}") from None

        try:
            cpus = {}
            for _ in range(count("the number of CPUs")):
                if at + 4 > n:
                    raise _Short
                (slot,) = _INT.unpack_from(buf, at)
                at += 4
                cpus[slot] = name("a CPU name")
            ranges = []
            for _ in range(count("the number of peripherals")):
                label = name("a peripheral name")
                if at + 16 > n:
                    raise _Short
                start, end = _RANGE.unpack_from(buf, at)
                at += 16
                if end < start:
                    raise ProfileFormatError(f"profiler header: peripheral {label} ends ({end:#x}) before it starts ({start:#x})")
                ranges.append(PeripheralRange(label, start, end))
        except _Short:
            return -1
        self.cpus = cpus
        self.ranges = sorted(ranges, key=lambda r: r.start)
        self._starts = [r.start for r in self.ranges]
        self._header_done = True
        return at

    def _entries(self, buf: bytes, at: int) -> int:
        n = len(buf)
        head = _HEAD.unpack_from
        width = self.bin_width * 1000.0  # bins in ms, as the file's times are
        bin_start = bin_end = -1.0
        reads = writes = 0
        entries = 0
        vt = self._last_time * 1000.0
        if self._start is None and at + 18 <= n:
            self._start = head(buf, at)[0] / 1000.0  # the window starts with the first entry
        while at + 18 <= n:
            vt, kind, first = head(buf, at)
            if not bin_start <= vt < bin_end:
                if reads or writes:
                    self._count_memory(bin_start, reads, writes)
                    reads = writes = 0
                bin_start = vt - vt % width
                bin_end = bin_start + width
            if kind == MEMORY:
                if first == MEMORY_READ:
                    reads += 1
                elif first == MEMORY_WRITE:
                    writes += 1
                at += 18
            elif kind == PERIPHERAL:
                if at + 26 > n:
                    break
                self._count_peripheral(vt, first, _U64.unpack_from(buf, at + 18)[0])
                at += 26
            elif kind == INSTRUCTIONS:
                if at + 29 > n:
                    break
                slot, total = _INSTRUCTIONS.unpack_from(buf, at + 17)
                self._count_instructions(vt, slot, total)
                at += 29
            elif kind == EXCEPTION:
                if at + 25 > n:
                    break
                self._count_exception(vt, _U64.unpack_from(buf, at + 17)[0])
                at += 25
            else:
                raise ProfileFormatError(
                    f"profiler entry of unknown type {kind} at byte {self.bytes_parsed + at} (virtual time {vt} ms);"
                    f" the file is not a Renode profiler file, or its layout changed"
                )
            entries += 1
        if reads or writes:
            self._count_memory(bin_start, reads, writes)
        self.entries += entries
        if entries:
            self._last_time = max(self._last_time, vt / 1000.0)
        return at

    # -- counting ----------------------------------------------------------------

    def _new_series(self) -> Series:
        return Series(start=self._start if self._start is not None else 0.0, width=self.bin_width)

    def _count_memory(self, bin_start_ms: float, reads: int, writes: int) -> None:
        t = bin_start_ms / 1000.0
        for kind, n in (("read", reads), ("write", writes)):
            if n:
                series = self._memory.get(kind)
                if series is None:
                    series = self._memory[kind] = self._new_series()
                series.add(t, n)

    def _count_peripheral(self, vt: float, operation: int, address: int) -> None:
        name = self._names.get(address)
        if name is None:
            at = bisect.bisect_right(self._starts, address) - 1
            found = self.ranges[at] if at >= 0 else None
            name = self._names[address] = found.name if found and address <= found.end else UNMAPPED
        kind = "write" if operation == IO_WRITE else "read"
        series = self._peripherals.get((name, kind))
        if series is None:
            series = self._peripherals[(name, kind)] = self._new_series()
        series.add(vt / 1000.0)

    def _count_instructions(self, vt: float, slot: int, total: int) -> None:
        last = self._cumulative.get(slot)
        self._cumulative[slot] = total
        name = self.cpus.get(slot, f"cpu slot {slot}")
        series = self._instructions.get(name)
        if series is None:
            series = self._instructions[name] = self._new_series()
        if last is not None and total > last:
            series.add(vt / 1000.0, total - last)

    def _count_exception(self, vt: float, index: int) -> None:
        series = self._exceptions.get(index)
        if series is None:
            series = self._exceptions[index] = self._new_series()
        series.add(vt / 1000.0)

    # -- output ------------------------------------------------------------------

    def metrics(self) -> DeviceMetrics:
        """What was parsed so far, as a snapshot (later feeds do not change it)."""
        start = self._start if self._start is not None else 0.0
        peripherals: dict[str, dict[str, Series]] = {}
        for (name, kind), series in sorted(self._peripherals.items()):
            peripherals.setdefault(name, {})[kind] = series.copy()
        notes = []
        if not self._header_done:
            notes.append("the profiler wrote nothing yet (no header)")
        return DeviceMetrics(
            endpoint=self.endpoint,
            source=self.source,
            start=start,
            end=max(start, self._last_time),
            instruction_series={name: s.copy() for name, s in self._instructions.items()},
            memory_series={kind: s.copy() for kind, s in self._memory.items()},
            peripheral_series=peripherals,
            address_map=list(self.ranges),
            exception_series={index: s.copy() for index, s in sorted(self._exceptions.items())},
            exception_names={i: ARM_EXCEPTIONS[i] for i in self._exceptions if i in ARM_EXCEPTIONS},
            notes=notes,
        )


class _Short(Exception):
    """The header goes on past the bytes fed so far."""


class ProfileReader:
    """Feeds a :class:`ProfileParser` what was appended to ``path`` since the last :meth:`update`."""

    def __init__(self, path: str | Path, parser: ProfileParser, *, chunk: int = CHUNK):
        self.path = Path(path)
        self.parser = parser
        self.offset = 0
        self.chunk = chunk

    def update(self) -> int:
        """Reads to the current end of the file (a missing file is an empty one); returns the bytes read."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return 0
        read = 0
        with f:
            f.seek(self.offset)
            while data := f.read(self.chunk):
                try:
                    self.parser.feed(data)
                except ProfileFormatError as e:
                    raise ProfileFormatError(f"{self.path}: {e}") from None
                self.offset += len(data)
                read += len(data)
        return read


def parse_profile(path: str | Path, endpoint: str = "", *, bin_width: float = 0.01) -> DeviceMetrics:
    """A whole profiler file, read in chunks; a last entry cut short is left out and noted."""
    reader = ProfileReader(path, ProfileParser(endpoint, bin_width=bin_width))
    reader.update()
    metrics = reader.parser.metrics()
    if reader.parser.pending:
        metrics.notes.append(f"{reader.parser.pending} bytes at the end of {path} are an incomplete entry")
    return metrics
