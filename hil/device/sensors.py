"""The node's sensors: named, each fed by a source evaluated on virtual time.

Sources:

* :class:`Fixed` — a constant, changed with ``sensor set``;
* :class:`Waveform` — ``base + amplitude * sin(2*pi*t/period)`` plus seeded
  noise; the noise depends only on the seed and the time step, so a run
  samples the same values however often (or seldom) it reads them;
* :class:`Trace` — replay of a CSV trace with columns ``time_s,value``,
  holding each value until the next sample's time (and the last one forever).

Sensor names and DevCapMgmt ids follow FITA's table (``temperature`` is 2,
``humidity`` 136, ...). A spec string as given on the command line,
``temperature=21.5``, ``temperature=wave:base=21,amplitude=2,period=60,noise=0.1,seed=7``
or ``humidity=csv:trace.csv``, is parsed by :func:`parse_sensor_spec`.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# DevCapMgmt (/15/x/0) sensor ids, from FITA's node watcher
SENSOR_IDS: dict[str, int] = {
    "light": 0,
    "presence": 1,
    "temperature": 2,
    "pressure": 4,
    "accelerometer": 133,
    "gyroscope": 134,
    "magnetometer": 135,
    "humidity": 136,
    "microphone": 137,
}

UNITS: dict[str, str] = {
    "light": "lx",
    "temperature": "Cel",
    "pressure": "hPa",
    "humidity": "%RH",
}


class SensorError(ValueError):
    """Bad sensor name, value, spec or trace; the message names the input and what is wrong."""


class Source(Protocol):
    def value(self, t: float) -> float:
        """The reading at virtual time ``t`` seconds."""

    @property
    def varies(self) -> bool:
        """False when the value never changes by itself (no need to sample it)."""


@dataclass(frozen=True)
class Fixed:
    level: float

    def value(self, t: float) -> float:
        return self.level

    @property
    def varies(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"fixed {self.level:g}"


@dataclass(frozen=True)
class Waveform:
    base: float
    amplitude: float = 0.0
    period: float = 60.0
    noise: float = 0.0
    seed: int = 0
    noise_step: float = 1.0  # the noise holds one value per step, so it is a function of time

    def __post_init__(self) -> None:
        if not self.period > 0:
            raise SensorError(f"waveform period must be > 0 s, got {self.period}")
        if not self.noise_step > 0:
            raise SensorError(f"waveform noise_step must be > 0 s, got {self.noise_step}")
        if self.noise < 0:
            raise SensorError(f"waveform noise must be >= 0, got {self.noise}")

    def value(self, t: float) -> float:
        wave = self.base + self.amplitude * math.sin(2 * math.pi * t / self.period)
        if not self.noise:
            return wave
        step = math.floor(t / self.noise_step)
        # a generator per step keeps the noise a pure function of (seed, step)
        return wave + random.Random(self.seed * 1_000_003 + step).uniform(-self.noise, self.noise)

    @property
    def varies(self) -> bool:
        return bool(self.amplitude or self.noise)

    def __str__(self) -> str:
        return f"wave base={self.base:g} amplitude={self.amplitude:g} period={self.period:g} noise={self.noise:g} seed={self.seed}"


class Trace:
    """Step-hold replay of ``(time_s, value)`` samples, sorted by time."""

    def __init__(self, samples: Iterable[tuple[float, float]], name: str = "trace"):
        self.samples = sorted(samples)
        self.name = name
        if not self.samples:
            raise SensorError(f"{name}: the trace has no samples")
        self._times = [t for t, _ in self.samples]

    @classmethod
    def from_csv(cls, path: str | Path) -> Trace:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SensorError(f"cannot read sensor trace {path}: {exc.strerror or exc}") from None
        return cls(_parse_trace(text.splitlines(), str(path)), str(path))

    def value(self, t: float) -> float:
        i = bisect.bisect_right(self._times, t) - 1
        return self.samples[max(i, 0)][1]  # before the first sample: its value

    @property
    def varies(self) -> bool:
        return len({v for _, v in self.samples}) > 1

    def __str__(self) -> str:
        return f"trace {self.name} ({len(self.samples)} samples)"


def _parse_trace(lines: Iterable[str], name: str) -> Iterator[tuple[float, float]]:
    rows = csv.reader(lines)
    header_seen = False
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if not header_seen:
            header_seen = True
            if [c.lower() for c in cells] == ["time_s", "value"]:
                continue
        if len(cells) != 2:
            raise SensorError(
                f"{name} line {number}: expected 2 columns time_s,value, got {len(cells)}: {','.join(row)!r}"
            )
        try:
            t, v = float(cells[0]), float(cells[1])
        except ValueError:
            raise SensorError(
                f"{name} line {number}: time_s and value must be numbers, got {','.join(row)!r}"
            ) from None
        if not (math.isfinite(t) and math.isfinite(v)):
            raise SensorError(f"{name} line {number}: time_s and value must be finite, got {','.join(row)!r}")
        yield t, v


SensorListener = Callable[["Sensor"], None]


class Sensor:
    def __init__(self, name: str, source: Source, clock_now: Callable[[], float]):
        if name not in SENSOR_IDS:
            raise SensorError(f"unknown sensor {name!r}: known sensors are {', '.join(SENSOR_IDS)}")
        self.name = name
        self.id = SENSOR_IDS[name]
        self.units = UNITS.get(name, "")
        self._source = source
        self._now = clock_now
        self._listeners: list[SensorListener] = []

    @property
    def source(self) -> Source:
        return self._source

    @source.setter
    def source(self, source: Source) -> None:
        self._source = source
        for listener in list(self._listeners):
            listener(self)

    def read(self) -> float:
        """The value now, on the node's virtual clock."""
        return float(self._source.value(self._now()))

    def set(self, value: float) -> None:
        """Switch to a fixed value (what ``sensor set`` does)."""
        self.source = Fixed(float(value))

    def add_listener(self, listener: SensorListener) -> Callable[[], None]:
        """Called when the source changes (not on every new reading)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def __repr__(self) -> str:
        return f"<Sensor {self.name} ({self.id}): {self._source}>"


SensorConfig = Mapping[str, "float | int | str | Source"]


class Sensors(Mapping[str, Sensor]):
    """The node's sensors by name, in board order (which numbers /15 instances)."""

    def __init__(self, config: SensorConfig, clock_now: Callable[[], float], seed: int = 0):
        self._sensors: dict[str, Sensor] = {}
        for name, spec in config.items():
            self._sensors[name] = Sensor(name, make_source(spec, seed=seed, what=f"sensor {name!r}"), clock_now)

    def __getitem__(self, name: str) -> Sensor:
        try:
            return self._sensors[name]
        except KeyError:
            raise SensorError(
                f"no sensor {name!r} on this node: it has {', '.join(self._sensors) or 'no sensors'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._sensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._sensors)

    def __len__(self) -> int:
        return len(self._sensors)

    def value(self, name: str) -> float:
        return self[name].read()


def make_source(spec: float | str | Source, *, seed: int = 0, what: str = "sensor") -> Source:
    """A source from a number, a spec string (see the module docstring) or a source."""
    if isinstance(spec, bool):
        raise SensorError(f"{what}: a boolean is not a sensor value")
    if isinstance(spec, (int, float)):
        return Fixed(float(spec))
    if not isinstance(spec, str):
        if hasattr(spec, "value"):
            return spec
        raise SensorError(f"{what}: expected a number, a spec string or a source, got {type(spec).__name__}")
    text = spec.strip()
    kind, _, rest = text.partition(":")
    if kind == "csv":
        if not rest:
            raise SensorError(f"{what}: 'csv:' needs a file path, e.g. csv:trace.csv")
        return Trace.from_csv(rest)
    if kind == "wave":
        return _waveform(rest, seed, what)
    try:
        return Fixed(float(text))
    except ValueError:
        raise SensorError(
            f"{what}: {spec!r} is not a number, 'wave:base=..,amplitude=..,period=..,noise=..,seed=..' or 'csv:PATH'"
        ) from None


_WAVE_KEYS = {"base", "amplitude", "period", "noise", "seed", "noise_step"}


def _waveform(text: str, seed: int, what: str) -> Waveform:
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in _WAVE_KEYS:
            raise SensorError(
                f"{what}: bad waveform parameter {item!r}: use {', '.join(sorted(_WAVE_KEYS))} as key=value"
            )
        try:
            params[key] = float(value)
        except ValueError:
            raise SensorError(f"{what}: waveform parameter {key}={value!r} is not a number") from None
    if "base" not in params:
        raise SensorError(f"{what}: a waveform needs base=VALUE")
    wave_seed = int(params.pop("seed", seed))
    return Waveform(seed=wave_seed, **params)


def parse_sensor_spec(text: str, *, seed: int = 0) -> tuple[str, Source]:
    """``NAME=SPEC`` from the command line into a sensor name and its source."""
    name, eq, spec = text.partition("=")
    name = name.strip()
    if not eq or not name:
        raise SensorError(f"bad sensor spec {text!r}: expected NAME=VALUE, e.g. temperature=21.5")
    if name not in SENSOR_IDS:
        raise SensorError(f"bad sensor spec {text!r}: unknown sensor {name!r}; known: {', '.join(SENSOR_IDS)}")
    return name, make_source(spec, seed=seed, what=f"sensor spec {text!r}")
