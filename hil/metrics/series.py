"""Counts of one kind of event over virtual time, in a bounded number of bins.

A :class:`Series` keeps counts in consecutive bins of virtual time (bin ``i``
covers ``start + i * width`` up to the next bin). When an event lands past the
last bin it may have, neighbouring bins merge and the width doubles, so a
series of an hour takes no more memory than one of a minute, and its total
stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WIDTH = 0.01  # seconds of virtual time per bin, before any merging
MAX_BINS = 2048
_EPSILON = 1e-9  # in bins: 0.03 / 0.01 is 2.9999999999999996


@dataclass
class Series:
    start: float = 0.0  # virtual seconds at the start of bin 0
    width: float = DEFAULT_WIDTH
    counts: list[int] = field(default_factory=list)
    max_bins: int = MAX_BINS

    def add(self, t: float, n: int = 1) -> None:
        """``n`` events at virtual time ``t`` (seconds; one before ``start`` counts in bin 0)."""
        i = int((t - self.start) // self.width)
        if i < 0:
            i = 0
        while i >= self.max_bins:
            self._merge()
            i = int((t - self.start) // self.width)
        counts = self.counts
        if i >= len(counts):
            counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += n

    def add_many(self, times: tuple[float, ...] | list[float], counts: tuple[int, ...] | list[int]) -> None:
        """``counts[k]`` events at ``times[k]`` (what :meth:`add` does for each, in one pass)."""
        if not times:
            return
        latest = max(times)
        while int((latest - self.start) // self.width) >= self.max_bins:
            self._merge()
        start, width, bins = self.start, self.width, self.counts
        last = max(0, int((latest - start) // width))
        if last >= len(bins):
            bins.extend([0] * (last + 1 - len(bins)))
        for t, n in zip(times, counts):
            i = int((t - start) // width)
            bins[i if i > 0 else 0] += n

    def _merge(self) -> None:
        c = self.counts
        self.counts = [sum(c[j : j + 2]) for j in range(0, len(c), 2)]
        self.width *= 2

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def end(self) -> float:
        return self.start + len(self.counts) * self.width

    def between(self, t0: float, t1: float) -> int:
        """Events in the bins that start at or after ``t0`` and end at or before ``t1`` (bin resolution)."""
        first = max(0, math.ceil((t0 - self.start) / self.width - _EPSILON))
        last = min(len(self.counts), math.floor((t1 - self.start) / self.width + _EPSILON))
        return sum(self.counts[first:last]) if last > first else 0

    def cumulative(self) -> tuple[list[float], list[int]]:
        """Points (end of each bin, events up to there), starting from (start, 0): what the plots draw."""
        xs, ys, running = [self.start], [0], 0
        for i, n in enumerate(self.counts):
            running += n
            xs.append(self.start + (i + 1) * self.width)
            ys.append(running)
        return xs, ys

    def copy(self) -> Series:
        return Series(self.start, self.width, list(self.counts), self.max_bins)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "width": self.width, "counts": self.counts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Series:
        return cls(float(data["start"]), float(data["width"]), [int(n) for n in data["counts"]])
