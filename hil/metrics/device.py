"""One node's execution metrics over a window of virtual time, with the summaries a test asserts on.

A :class:`DeviceMetrics` comes from Renode's profiler (instructions per CPU,
memory and peripheral accesses, exceptions) or from the simulator (what each
deployed service ran: :class:`~hil.metrics.cost.ServiceCost`). A summary the
source cannot give raises :class:`MetricsUnavailable` saying which source has
it, so a cost bound written for one target reads plainly on another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cost import ServiceCost
from .series import Series

ACCESS_KINDS = ("read", "write")


class MetricsUnavailable(LookupError):
    """The node's metrics do not hold what was asked for (the message says why, and where it is recorded)."""


@dataclass(frozen=True)
class PeripheralRange:
    name: str
    start: int
    end: int  # inclusive, as Renode registers it


@dataclass
class DeviceMetrics:
    endpoint: str
    source: str  # "Renode profiler", "simulator"
    start: float  # virtual seconds: the window the metrics cover
    end: float
    instruction_series: dict[str, Series] = field(default_factory=dict)  # per CPU
    memory_series: dict[str, Series] = field(default_factory=dict)  # "read", "write"
    peripheral_series: dict[str, dict[str, Series]] = field(default_factory=dict)  # name -> "read"/"write" -> series
    address_map: list[PeripheralRange] = field(default_factory=list)
    exception_series: dict[int, Series] = field(default_factory=dict)  # by the CPU's exception number
    exception_names: dict[int, str] = field(default_factory=dict)
    services: dict[str, ServiceCost] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. an incomplete entry at the end of the file

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def _missing(self, what: str) -> MetricsUnavailable:
        if self.source == "simulator":
            why = ("the simulator counts what each deployed service runs (instructions per slice, SDK calls);"
                   " it has no CPU-wide counts, memory bus, peripherals or exceptions: Renode's profiler records those")
        else:
            why = (f"the {self.source} counts per CPU and per peripheral, not per service;"
                   " the simulator counts per service")
        return MetricsUnavailable(f"{self.endpoint}: no {what} in its metrics ({self.source}): {why}")

    # -- summaries ---------------------------------------------------------------

    def instructions_total(self, cpu: str | None = None) -> int:
        """Instructions executed in the window: one CPU's, or all CPUs' (on the simulator: all services')."""
        if self.source == "simulator" and cpu is None:
            return sum(c.total_instructions for c in self.services.values())
        if not self.instruction_series:
            raise self._missing("instruction counts")
        if cpu is None:
            return sum(s.total for s in self.instruction_series.values())
        if cpu not in self.instruction_series:
            raise MetricsUnavailable(f"{self.endpoint}: no CPU {cpu!r}; it has {', '.join(self.instruction_series)}")
        return self.instruction_series[cpu].total

    def instructions_per_second(self, cpu: str | None = None) -> float:
        """Instructions per second of virtual time over the window."""
        return self.instructions_total(cpu) / self.duration if self.duration > 0 else 0.0

    def service(self, name: str) -> ServiceCost:
        if not self.services:
            raise self._missing(f"per-service counts (service {name!r})")
        if name not in self.services:
            raise MetricsUnavailable(f"{self.endpoint}: service {name!r} did not run while counted;"
                                     f" counted: {', '.join(self.services)}")
        return self.services[name]

    def instructions_per_period(self, service: str) -> int:
        """The most instructions one ``loop()`` period of ``service`` took (from a sleep to the next)."""
        try:
            return self.service(service).instructions_per_period()
        except LookupError as e:
            if isinstance(e, MetricsUnavailable):
                raise
            raise MetricsUnavailable(f"{self.endpoint}: {e}") from None

    def sdk_calls(self, service: str) -> dict[str, int]:
        """SDK calls ``service`` made in the window, by name (output, sleep, sensor_read, ...)."""
        return dict(self.service(service).calls)

    def peripheral_accesses(self, name: str, kind: str | None = None) -> int:
        """Accesses to peripheral ``name`` (as the platform names it, e.g. ``uart0``): reads, writes or both."""
        if kind is not None and kind not in ACCESS_KINDS:
            raise ValueError(f"kind={kind!r}: 'read', 'write' or None (both)")
        if not self.address_map and not self.peripheral_series:
            raise self._missing("peripheral accesses")
        known = {r.name for r in self.address_map} | set(self.peripheral_series)
        if name not in known:
            raise MetricsUnavailable(f"{self.endpoint}: no peripheral {name!r} on the platform;"
                                     f" it has {', '.join(sorted(known))}")
        series = self.peripheral_series.get(name, {})
        return sum(s.total for k, s in series.items() if kind is None or k == kind)

    def memory_accesses(self, kind: str | None = None) -> int:
        if kind is not None and kind not in ACCESS_KINDS:
            raise ValueError(f"kind={kind!r}: 'read', 'write' or None (both)")
        if self.source == "simulator":
            raise self._missing("memory accesses")
        return sum(s.total for k, s in self.memory_series.items() if kind is None or k == kind)

    def exceptions(self) -> dict[int, int]:
        """How many times the CPU entered each exception, by number (see :attr:`exception_names`)."""
        if self.source == "simulator":
            raise self._missing("exceptions")
        return {number: s.total for number, s in self.exception_series.items()}

    def summary(self) -> dict[str, Any]:
        """The figures a report shows, as plain data (what the HIL suite records)."""
        out: dict[str, Any] = {"endpoint": self.endpoint, "source": self.source,
                               "window_s": round(self.duration, 3)}
        if self.source == "simulator":
            for name, cost in self.services.items():
                periods = cost.kinds.get("period")
                out[f"{name}.instructions_per_period"] = periods.most if periods else None
                out[f"{name}.instructions"] = cost.total_instructions
                out.update({f"{name}.calls.{call}": n for call, n in sorted(cost.calls.items())})
            return out
        out["instructions"] = {cpu: s.total for cpu, s in self.instruction_series.items()}
        out["instructions_per_second"] = round(self.instructions_per_second(), 1) if self.instruction_series else None
        out["memory"] = {kind: s.total for kind, s in self.memory_series.items()}
        out["peripherals"] = {name: {k: s.total for k, s in kinds.items()} for name, kinds in self.peripheral_series.items()}
        out["exceptions"] = {self.exception_label(n): c for n, c in self.exceptions().items()}
        return out

    def exception_label(self, number: int) -> str:
        name = self.exception_names.get(number)
        return f"{number} ({name})" if name else str(number)

    # -- JSON ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "instructions": {k: s.to_json() for k, s in self.instruction_series.items()},
            "memory": {k: s.to_json() for k, s in self.memory_series.items()},
            "peripherals": {n: {k: s.to_json() for k, s in kinds.items()} for n, kinds in self.peripheral_series.items()},
            "address_map": [[r.name, r.start, r.end] for r in self.address_map],
            "exceptions": {str(n): s.to_json() for n, s in self.exception_series.items()},
            "exception_names": {str(n): name for n, name in self.exception_names.items()},
            "services": {n: c.to_json() for n, c in self.services.items()},
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceMetrics:
        return cls(
            endpoint=data["endpoint"],
            source=data["source"],
            start=float(data["start"]),
            end=float(data["end"]),
            instruction_series={k: Series.from_json(s) for k, s in data["instructions"].items()},
            memory_series={k: Series.from_json(s) for k, s in data["memory"].items()},
            peripheral_series={n: {k: Series.from_json(s) for k, s in kinds.items()} for n, kinds in data["peripherals"].items()},
            address_map=[PeripheralRange(n, int(a), int(b)) for n, a, b in data["address_map"]],
            exception_series={int(n): Series.from_json(s) for n, s in data["exceptions"].items()},
            exception_names={int(n): name for n, name in data["exception_names"].items()},
            services={n: ServiceCost.from_json(c) for n, c in data["services"].items()},
            notes=list(data["notes"]),
        )


def write_metrics_json(path: Path, nodes: dict[str, DeviceMetrics]) -> None:
    """Every node's metrics of one test, written whole (to a temporary name first, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"nodes": {ep: m.to_json() for ep, m in nodes.items()}}, indent=1) + "\n")
    tmp.replace(path)


def read_metrics_json(path: Path) -> dict[str, DeviceMetrics]:
    try:
        data = json.loads(path.read_text())
        return {ep: DeviceMetrics.from_json(m) for ep, m in data["nodes"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a metrics file written by embserve-hil ({type(e).__name__}: {e})") from None
