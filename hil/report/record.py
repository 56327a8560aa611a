"""The record of one HIL test, for the people and CI systems reading its report.

While a test runs, a :class:`TestRecord` is told what happens: the node that
came up (target, board, firmware), every deployment (its step timings and the
service's digest), the values injected into the node's sensors and service
inputs, and the reading collectors the test opened. After it,
:meth:`TestRecord.snapshot` freezes all of it into a :class:`RecordedTest`,
which the pytest plugin renders into the HTML report, turns into JUnit
properties, and writes as ``report.json`` into the test's log folder, where
``embserve-hil report LOGDIR`` reads it back (:func:`load`).

``report.json`` (schema ``embserve-hil/test-report``, version 1)::

    {"schema": "embserve-hil/test-report", "version": 1,
     "nodeid", "outcome", "duration", "started",       # pytest's test id and result, epoch seconds
     "target", "board", "firmware", "firmware_sha256",  # firmware: path or null (the simulator)
     "time_scale",                                      # device seconds per wall-clock second
     "log_dir", "bundle",                               # absolute paths; bundle null when none was kept
     "deployments": [{"endpoint", "instance", "service", "version", "source", "digest", "reused",
                      "finished", "steps": {"resolve": s, ..., "first reading": s or null}}],
     "injections": [{"endpoint", "time", "kind": "sensor"|"input", "name", "value", "instance"}],
     "series": [{"endpoint", "path", "points": [[wall_time, value, device_time or null], ...]}]}
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "embserve-hil/test-report"
VERSION = 1
FILE_NAME = "report.json"
BUNDLE_DIR = "bundle"  # where a test's replay bundle is kept in its log folder

#: the deployer's step names as the report shows them, in order
STEP_NAMES = {"fetch": "resolve", "validate": "validate", "create": "create", "write": "write",
              "install": "install", "activate": "activate"}
FIRST_READING = "first reading"

#: A service's sampling period: the input that sets it (and its unit in seconds), and the
#: period it starts with. The temperature service starts at 30 s; its ``rate`` input is in
#: ms (protocol doc, section 6).
PERIOD_INPUTS = {"rate": 0.001}
DEFAULT_PERIODS = {"temperature_sensor": 30.0}

#: the node sensor an injected value goes to -> the IPSO object its readings come from
SENSOR_OBJECTS = {"temperature": 3303, "humidity": 3304, "pressure": 3315, "light": 3301, "presence": 3302}


class ReportError(ValueError):
    """A report.json (or a log folder) that cannot be read; the message names it."""


@dataclass
class Point:
    time: float  # wall clock (epoch seconds) when the gateway received the reading
    value: Any
    device_time: float | None = None  # the device's own time of the reading, where it gave one


@dataclass
class Series:
    endpoint: str
    path: str
    points: list[Point] = field(default_factory=list)

    @property
    def on_device_time(self) -> bool:
        return bool(self.points) and all(p.device_time is not None for p in self.points)

    @property
    def obj(self) -> int | None:
        head = self.path.strip("/").split("/", 1)[0]
        return int(head) if head.isdigit() else None


@dataclass
class Injection:
    endpoint: str
    time: float  # wall clock, epoch seconds
    kind: str  # "sensor" (a sensor value) or "input" (a service input by key)
    name: str
    value: Any
    instance: int | None = None  # the service's /9 instance, for an input

    @property
    def period(self) -> float | None:
        """The sampling period this input sets, in device seconds; None for anything else."""
        scale = PERIOD_INPUTS.get(self.name) if self.kind == "input" else None
        try:
            return float(self.value) * scale if scale is not None else None
        except (TypeError, ValueError):
            return None


@dataclass
class DeployRecord:
    endpoint: str
    instance: int
    service: str
    version: Any
    source: str
    digest: str | None
    reused: bool
    finished: float  # wall clock, epoch seconds, when the service was active
    steps: dict[str, float | None]  # report step name -> seconds (first reading: None when none came)

    @property
    def total(self) -> float:
        """Seconds from resolving the reference to the service running (first reading not included)."""
        return sum(v for k, v in self.steps.items() if k != FIRST_READING and v is not None)


@dataclass
class RecordedTest:
    """One HIL test as its report shows it (see the module docs for its JSON form)."""

    nodeid: str
    outcome: str = "passed"
    duration: float = 0.0
    started: float = 0.0
    target: str | None = None
    board: str | None = None
    firmware: str | None = None
    firmware_sha256: str | None = None
    time_scale: float = 1.0
    log_dir: str | None = None
    bundle: str | None = None
    deployments: list[DeployRecord] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)

    # ------------------------------------------------------------ what CI charts
    @property
    def readings(self) -> int:
        return sum(len(s.points) for s in self.series)

    @property
    def deploy_ms(self) -> float | None:
        """The first new deployment's time, resolve to active, in ms (None: nothing deployed)."""
        fresh = [d for d in self.deployments if not d.reused] or self.deployments
        return round(fresh[0].total * 1000, 1) if fresh else None

    @property
    def service_digest(self) -> str:
        return " ".join(dict.fromkeys(d.digest for d in self.deployments if d.digest))

    def junit_properties(self) -> list[tuple[str, str]]:
        """The ``<property>`` elements of this test in JUnit XML, in a fixed order."""
        deploy_ms = self.deploy_ms
        return [
            ("target", self.target or ""),
            ("board", self.board or ""),
            ("firmware_sha256", self.firmware_sha256 or ""),
            ("service_digest", self.service_digest),
            ("readings", str(self.readings)),
            ("deploy_ms", "" if deploy_ms is None else f"{deploy_ms:g}"),
        ]

    # ------------------------------------------------------------ what plots mark
    def injections_for(self, series: Series) -> list[Injection]:
        """Sensor values injected into the sensor whose readings ``series`` carries."""
        return [i for i in self.injections
                if i.kind == "sensor" and i.endpoint == series.endpoint and SENSOR_OBJECTS.get(i.name) == series.obj]

    def periods_for(self, endpoint: str) -> list[tuple[float, float, str]]:
        """(wall time, period in device seconds, what set it) each time a service on ``endpoint``
        started with its period or was asked for another (the service may refuse it)."""
        marks = [(d.finished, DEFAULT_PERIODS[d.service], "start") for d in self.deployments
                 if d.endpoint == endpoint and not d.reused and d.service in DEFAULT_PERIODS]
        marks += [(i.time, i.period, f"{i.name}={i.value}") for i in self.injections
                  if i.endpoint == endpoint and i.period is not None]
        return sorted(marks)

    def median_interval(self, series: Series) -> float | None:
        """Median spacing of the readings, in device seconds (wall spacing times the time scale
        when the readings carry no device time)."""
        if len(series.points) < 2:
            return None
        if series.on_device_time:
            times = [p.device_time for p in series.points]
            scale = 1.0
        else:
            times = [p.time for p in series.points]
            scale = self.time_scale
        return statistics.median(b - a for a, b in zip(times, times[1:])) * scale

    # ------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        doc = {"schema": SCHEMA, "version": VERSION, **asdict(self)}
        doc["series"] = [{"endpoint": s.endpoint, "path": s.path,
                          "points": [[p.time, p.value, p.device_time] for p in s.points]} for s in self.series]
        return doc

    @classmethod
    def from_json(cls, doc: Any, source: str = "<report>") -> "RecordedTest":
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ReportError(f"{source}: not an embserve-hil test report (schema {SCHEMA!r} expected)")
        if doc.get("version") != VERSION:
            raise ReportError(f"{source}: report version {doc.get('version')!r}; this embserve-hil reads version {VERSION}")
        try:
            fields = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
            fields["deployments"] = [DeployRecord(**d) for d in doc.get("deployments", [])]
            fields["injections"] = [Injection(**i) for i in doc.get("injections", [])]
            fields["series"] = [Series(s["endpoint"], s["path"], [Point(*p) for p in s["points"]])
                                for s in doc.get("series", [])]
            return cls(**fields)
        except (TypeError, KeyError) as e:
            raise ReportError(f"{source}: malformed test report: {e}") from None

    def write(self, directory: Path) -> Path:
        """``report.json`` in ``directory``, written whole or not at all."""
        path = Path(directory) / FILE_NAME
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), separators=(",", ":"), default=str), encoding="utf-8")
        partial.replace(path)
        return path


def load(path: Path) -> RecordedTest:
    """A ``report.json`` read back."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ReportError(f"{path}: cannot read the test report: {e.strerror or e}") from None
    except ValueError as e:
        raise ReportError(f"{path}: not JSON: {e}") from None
    return RecordedTest.from_json(doc, str(path))


_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per path, size and modification time (a firmware serves many tests)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _digests[key]


class TestRecord:
    """Told what happens during one test; :meth:`snapshot` freezes it (see the module docs).

    ``watch`` keeps the collectors themselves, so readings that arrive until the
    snapshot is taken are in it.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, nodeid: str, *, target: str | None = None, log_dir: Path | None = None):
        self.nodeid = nodeid
        self.target = target
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.started = time.time()
        self.board: str | None = None
        self.firmware: Path | None = None
        self.time_scale = 1.0
        self.deployments: list[DeployRecord] = []
        self.injections: list[Injection] = []
        self._collectors: list[Any] = []

    # ------------------------------------------------------------ told by the fixtures
    def node_started(self, target: Any) -> None:
        """A node is up: its board, firmware and time scale describe the test (the first node's do)."""
        if self.board is None:
            board = getattr(target.config, "board", None)
            self.board = board.name if board is not None else None
        if self.firmware is None:
            firmware = getattr(target, "firmware", None) or getattr(target.config, "firmware", None)
            self.firmware = Path(firmware) if firmware else None
        self.time_scale = float(getattr(target, "time_scale", 1.0) or 1.0)

    def deployed(self, deployment: Any) -> None:
        """A deployer's listener: ``deployment`` (a far-edge Deployment) is active now."""
        steps: dict[str, float | None] = {STEP_NAMES.get(k, k): v for k, v in deployment.steps.items()}
        self.deployments.append(DeployRecord(
            deployment.endpoint, deployment.instance, deployment.name, deployment.version, deployment.source,
            deployment.digest, deployment.reused, time.time(), steps,
        ))

    def injected(self, endpoint: str, sensor: str, value: Any) -> None:
        self.injections.append(Injection(endpoint, time.time(), "sensor", sensor, value))

    def service_input(self, endpoint: str, instance: int, key: str, value: Any) -> None:
        self.injections.append(Injection(endpoint, time.time(), "input", key, value, instance))

    def watch(self, collector: Any) -> None:
        """A reading collector (``hil.readings``) whose readings belong in the report."""
        self._collectors.append(collector)

    # ------------------------------------------------------------ after the test
    def snapshot(self, outcome: str = "passed", duration: float = 0.0) -> RecordedTest:
        series = self._series()
        deployments = [self._with_first_reading(d, series) for d in self.deployments]
        bundle = self.log_dir / BUNDLE_DIR if self.log_dir is not None else None
        sha = None
        if self.firmware is not None:
            try:
                sha = file_sha256(self.firmware)
            except OSError:
                sha = None  # gone since (a temporary build): the path still says which it was
        return RecordedTest(
            nodeid=self.nodeid, outcome=outcome, duration=duration, started=self.started,
            target=self.target, board=self.board,
            firmware=str(self.firmware) if self.firmware else None, firmware_sha256=sha,
            time_scale=self.time_scale,
            log_dir=str(self.log_dir) if self.log_dir is not None else None,
            bundle=str(bundle) if bundle is not None and bundle.is_dir() else None,
            deployments=deployments, injections=list(self.injections), series=series,
        )

    def _series(self) -> list[Series]:
        """Every collector's readings per node and resource, each reading once, in arrival order."""
        by_key: dict[tuple[str, str], dict[tuple[float, str], Point]] = {}
        for c in self._collectors:
            if c.path is None:
                continue
            points = by_key.setdefault((c.endpoint, str(c.path)), {})
            for r in c.readings:
                device_time = getattr(r, "device_time", None)
                points.setdefault((r.time, repr(r.value)), Point(r.time, r.value, device_time))
        return [Series(ep, path, sorted(points.values(), key=lambda p: p.time))
                for (ep, path), points in by_key.items()]

    @staticmethod
    def _with_first_reading(d: DeployRecord, series: list[Series]) -> DeployRecord:
        if d.reused:
            return d
        after = [p.time for s in series if s.endpoint == d.endpoint for p in s.points if p.time >= d.finished]
        steps = {**d.steps, FIRST_READING: (min(after) - d.finished) if after else None}
        return DeployRecord(**{**asdict(d), "steps": steps})
