"""What one service cost on a simulated node: its slices of execution, their instructions and SDK calls.

A *slice* is what the service's code ran from one stop to the next: the
main thread from a start or a wake-up to its next sleep (or its return),
or a handler from its call to its return. Kinds of slice:

* ``setup``: ``setup()``, or a part of it between two sleeps;
* ``first``: ``loop()`` from its call to its first sleep (its preamble and first iteration);
* ``period``: ``loop()`` from one sleep to the next, one period of a service that
  sleeps once per iteration: what :meth:`ServiceCost.instructions_per_period` summarises;
* ``end``: the main thread's last slice (``loop()`` returned, or it faulted);
* a handler's name (``on_input``, ``on_quit``).

SDK calls go by the SDK's names without ``embserve_`` and ``_impl``
(``output``, ``sleep``, ``get_sensor``, ``printf``), except that
``embserve_get_sensor_data`` (a sensor read) is ``sensor_read``; ``memcpy``,
``memset`` and ``strcmp`` keep theirs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

from .series import Series

MAX_SLICES = 4096  # kept one by one (~1.5 MB); the older half is then folded into per-kind figures and totals
PERIOD = "period"


class Slice(NamedTuple):
    time: float  # virtual seconds when it ended
    kind: str
    instructions: int
    calls: dict[str, int]


@dataclass
class KindStats:
    count: int = 0
    instructions: int = 0
    least: int = 0
    most: int = 0

    def add(self, instructions: int) -> None:
        self.least = instructions if self.count == 0 else min(self.least, instructions)
        self.most = max(self.most, instructions)
        self.count += 1
        self.instructions += instructions

    def add_many(self, instructions: list[int] | tuple[int, ...]) -> None:
        if not instructions:
            return
        least, most = min(instructions), max(instructions)
        self.least = least if self.count == 0 else min(self.least, least)
        self.most = max(self.most, most)
        self.count += len(instructions)
        self.instructions += sum(instructions)


@dataclass
class ServiceCost:
    """A service's slices as they ran; the figures over them are computed when asked for.

    The latest slices are kept one by one, each with its SDK calls as a tuple
    of names (one per call, in order: the cheapest thing to record while the
    service runs, and shared by the slices that made the same calls). When
    :data:`MAX_SLICES` are kept, the older half is folded into per-kind
    figures, call totals and the instructions series, so the record stops
    growing (recording stays a tuple and an append, folding a few passes of
    builtins now and then) and every figure stays exact.
    """

    name: str
    start: float = 0.0  # virtual seconds when counting began
    raw: list[tuple[float, str, int, tuple[str, ...]]] = field(default_factory=list)  # plain tuples: cheapest to record
    folded: int = 0  # older slices in the figures, no longer in ``slices``
    folded_kinds: dict[str, KindStats] = field(default_factory=dict)
    folded_calls: Counter[str] = field(default_factory=Counter)
    folded_instructions: Series | None = None

    def record(self, time: float, kind: str, instructions: int, calls: tuple[str, ...]) -> None:
        """One slice that ended at virtual ``time``; ``calls`` names each SDK call it made and becomes the record's."""
        raw = self.raw
        raw.append((time, kind, instructions, calls))
        if len(raw) >= MAX_SLICES:
            self._fold(len(raw) // 2)

    def _fold(self, n: int) -> None:
        old, self.raw = self.raw[:n], self.raw[n:]
        times, kinds, counts, calls = zip(*old)
        for kind in set(kinds):
            mine = counts if len(kinds) == kinds.count(kind) else [c for k, c in zip(kinds, counts) if k == kind]
            stats = self.folded_kinds.get(kind)
            if stats is None:
                stats = self.folded_kinds[kind] = KindStats()
            stats.add_many(mine)
        self.folded_calls.update(chain.from_iterable(calls))
        series = self.folded_instructions or Series(start=self.start)
        series.add_many(times, counts)
        self.folded_instructions = series
        self.folded += n

    # -- figures --------------------------------------------------------------

    @property
    def slices(self) -> list[Slice]:
        return [Slice(t, kind, n, _counted(calls)) for t, kind, n, calls in self.raw]

    @property
    def kinds(self) -> dict[str, KindStats]:
        """Per kind of slice: how many, their instructions in all, the least and the most one took."""
        kinds = {k: KindStats(s.count, s.instructions, s.least, s.most) for k, s in self.folded_kinds.items()}
        for _, kind, instructions, _ in self.raw:
            kinds.setdefault(kind, KindStats()).add(instructions)
        return kinds

    @property
    def calls(self) -> Counter[str]:
        """SDK calls in all, by name."""
        calls = Counter(self.folded_calls)
        calls.update(chain.from_iterable(r[3] for r in self.raw))
        return calls

    @property
    def instructions(self) -> Series:
        """Instructions over virtual time, every slice included."""
        series = self.folded_instructions.copy() if self.folded_instructions else Series(start=self.start)
        for time, _, instructions, _ in self.raw:
            series.add(time, instructions)
        return series

    @property
    def total_instructions(self) -> int:
        return sum(r[2] for r in self.raw) + sum(k.instructions for k in self.folded_kinds.values())

    def periods(self) -> list[Slice]:
        return [Slice(t, kind, n, _counted(calls)) for t, kind, n, calls in self.raw if kind == PERIOD]

    def instructions_per_period(self) -> int:
        """The most instructions one ``loop()`` period took (sleep to sleep); LookupError before the first."""
        kinds = self.kinds
        stats = kinds.get(PERIOD)
        if stats is None:
            seen = ", ".join(f"{k} x{s.count}" for k, s in kinds.items()) or "nothing"
            raise LookupError(f"{self.name} has not completed a loop() period (sleep to sleep) yet; it ran: {seen}")
        return stats.most

    # -- JSON -------------------------------------------------------------------

    def copy(self) -> ServiceCost:
        return ServiceCost(self.name, self.start, list(self.raw), self.folded,
                           {k: KindStats(s.count, s.instructions, s.least, s.most) for k, s in self.folded_kinds.items()},
                           Counter(self.folded_calls),
                           self.folded_instructions.copy() if self.folded_instructions else None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": self.start,
            "slices": [[t, kind, n, _counted(calls)] for t, kind, n, calls in self.raw],
            "folded": self.folded,
            "folded_kinds": {k: vars(s) for k, s in self.folded_kinds.items()},
            "folded_calls": dict(self.folded_calls),
            "folded_instructions": self.folded_instructions.to_json() if self.folded_instructions else None,
            # figures over all slices, for readers of the file
            "kinds": {k: vars(s) for k, s in self.kinds.items()},
            "calls": dict(self.calls),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceCost:
        folded = data.get("folded_instructions")
        return cls(
            data["name"], float(data["start"]),
            [(float(t), kind, int(n), _names(calls)) for t, kind, n, calls in data["slices"]],
            int(data["folded"]),
            {k: KindStats(**s) for k, s in data["folded_kinds"].items()},
            Counter(data["folded_calls"]),
            Series.from_json(folded) if folded else None,
        )


def _counted(calls: Iterable[str]) -> dict[str, int]:
    """A slice's calls by name, as its figures and the JSON file give them."""
    return dict(Counter(calls))


def _names(calls: Mapping[str, int]) -> tuple[str, ...]:
    return tuple(name for name, count in calls.items() for _ in range(int(count)))
