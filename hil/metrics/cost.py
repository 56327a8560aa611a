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
from dataclasses import dataclass, field
from typing import Any

from .series import Series

MAX_SLICES = 20_000  # kept one by one; past this only the totals and per-kind figures grow
PERIOD = "period"


@dataclass(frozen=True)
class Slice:
    time: float  # virtual seconds when it ended
    kind: str
    instructions: int
    calls: dict[str, int] = field(default_factory=dict)


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


@dataclass
class ServiceCost:
    name: str
    start: float = 0.0  # virtual seconds when counting began
    slices: list[Slice] = field(default_factory=list)
    kinds: dict[str, KindStats] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    instructions: Series | None = None  # instructions over virtual time, every slice included
    dropped: int = 0  # slices past MAX_SLICES: in the totals, not in ``slices``

    def __post_init__(self) -> None:
        if self.instructions is None:
            self.instructions = Series(start=self.start)

    def record(self, time: float, kind: str, instructions: int, calls: dict[str, int]) -> None:
        if len(self.slices) < MAX_SLICES:
            self.slices.append(Slice(time, kind, instructions, calls))
        else:
            self.dropped += 1
        self.kinds.setdefault(kind, KindStats()).add(instructions)
        self.calls.update(calls)
        assert self.instructions is not None
        self.instructions.add(time, instructions)

    # -- summaries ------------------------------------------------------------

    @property
    def total_instructions(self) -> int:
        return sum(k.instructions for k in self.kinds.values())

    def periods(self) -> list[Slice]:
        return [s for s in self.slices if s.kind == PERIOD]

    def instructions_per_period(self) -> int:
        """The most instructions one ``loop()`` period took (sleep to sleep); LookupError before the first."""
        stats = self.kinds.get(PERIOD)
        if stats is None:
            seen = ", ".join(f"{k} x{s.count}" for k, s in self.kinds.items()) or "nothing"
            raise LookupError(f"{self.name} has not completed a loop() period (sleep to sleep) yet; it ran: {seen}")
        return stats.most

    # -- JSON -------------------------------------------------------------------

    def copy(self) -> ServiceCost:
        assert self.instructions is not None
        return ServiceCost(self.name, self.start, list(self.slices),
                           {k: KindStats(s.count, s.instructions, s.least, s.most) for k, s in self.kinds.items()},
                           Counter(self.calls), self.instructions.copy(), self.dropped)

    def to_json(self) -> dict[str, Any]:
        assert self.instructions is not None
        return {
            "name": self.name,
            "start": self.start,
            "kinds": {k: vars(s) for k, s in self.kinds.items()},
            "calls": dict(self.calls),
            "instructions": self.instructions.to_json(),
            "dropped": self.dropped,
            "slices": [[s.time, s.kind, s.instructions, s.calls] for s in self.slices],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceCost:
        return cls(
            data["name"], float(data["start"]),
            [Slice(float(t), kind, int(n), dict(calls)) for t, kind, n, calls in data["slices"]],
            {k: KindStats(**s) for k, s in data["kinds"].items()},
            Counter(data["calls"]), Series.from_json(data["instructions"]), int(data["dropped"]),
        )
