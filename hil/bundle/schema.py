"""``bundle.json``: what a run was, in a versioned, documented shape (docs/bundles.md).

:func:`load_bundle` reads and checks a bundle directory and returns a
:class:`Bundle`; every problem is one :class:`BundleError` naming the file,
the field and what is wrong. :meth:`Bundle.to_json` is the writer's side;
the two round-trip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..faults import DeviceFault
from .timeline import ACTIONS, Step

SCHEMA = "embserve-hil/bundle"
VERSION = 1
FILE_NAME = "bundle.json"


class BundleError(ValueError):
    """A bundle cannot be used; the message names the file, the field and the problem."""


@dataclass
class ServiceRecord:
    name: str
    version: int
    sha256: str  # of service.json
    service_json: str  # path inside the bundle
    reference: str | None = None  # OCI reference (or file) it was deployed from
    manifest_digest: str | None = None  # OCI manifest digest, when it came from a registry
    elf: str | None = None  # path inside the bundle of the ELF with debug information, when known
    elf_sha256: str | None = None


@dataclass
class FirmwareRecord:
    path: str
    sha256: str
    build_id: str | None = None


@dataclass
class Bundle:
    """One run of one test, as bundle.json describes it; paths inside are relative to :attr:`root`."""

    embserve_hil: str
    created: str
    test: dict[str, Any]  # nodeid, outcome, message, duration
    target: str
    board: dict[str, Any] | None  # name, source, contents
    options: dict[str, Any]
    seed: int
    endpoints: list[str]
    firmware: FirmwareRecord | None
    services: list[ServiceRecord]
    timeline: list[Step]
    consoles: dict[str, str]
    capture: dict[str, Any] | None
    faults: list[DeviceFault] = field(default_factory=list)
    end: dict[str, Any] = field(default_factory=dict)  # wall_time, device_time (per endpoint)
    root: Path = Path(".")

    # -- writing ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "embserve_hil": self.embserve_hil,
            "created": self.created,
            "test": self.test,
            "target": self.target,
            "board": self.board,
            "options": self.options,
            "seed": self.seed,
            "endpoints": self.endpoints,
            "firmware": None if self.firmware is None else vars(self.firmware).copy(),
            "services": [vars(s).copy() for s in self.services],
            "timeline": [s.to_dict() for s in self.timeline],
            "consoles": self.consoles,
            "capture": self.capture,
            "faults": [f.to_dict() for f in self.faults],
            "end": self.end,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n"

    def write(self, directory: Path) -> Path:
        path = directory / FILE_NAME
        partial = path.with_name(FILE_NAME + ".partial")
        partial.write_text(self.to_json())
        partial.replace(path)  # never a half-written bundle.json
        return path

    # -- reading ------------------------------------------------------------------
    def service(self, sha256: str) -> ServiceRecord | None:
        return next((s for s in self.services if s.sha256 == sha256), None)

    def service_json(self, record: ServiceRecord) -> bytes:
        """The bundle's copy of a service.json, checked against its recorded digest."""
        path = self.root / record.service_json
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BundleError(f"{path}: service {record.name} is missing from the bundle: {e.strerror}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != record.sha256:
            raise BundleError(f"{path}: service {record.name} does not match the bundle: bundle.json records sha256"
                              f" {record.sha256}, the file has {actual}")
        return data

    @property
    def failure(self) -> DeviceFault | None:
        """The recorded failure to look for in a replay: the first fault a device reported."""
        return self.faults[0] if self.faults else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- checking ---------------------------------------------------------------------

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "version": int,
    "embserve_hil": str,
    "created": str,
    "test": dict,
    "target": str,
    "board": (dict, type(None)),
    "options": dict,
    "seed": int,
    "endpoints": list,
    "firmware": (dict, type(None)),
    "services": list,
    "timeline": list,
    "consoles": dict,
    "capture": (dict, type(None)),
}
_STEP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "index": int, "action": str, "endpoint": str, "wall_time": (int, float), "device_time": (int, float, type(None)),
    "args": dict,
}


def load_bundle(where: str | Path) -> Bundle:
    """Read and check the bundle in directory ``where`` (or the bundle.json file itself)."""
    path = Path(where)
    if path.is_dir():
        path = path / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file (a bundle is a directory holding {FILE_NAME})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: cannot read: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON (truncated or hand-edited?): {e.msg} at line {e.lineno}"
                          f" column {e.colno}") from None
    return bundle_from_dict(data, path)


def bundle_from_dict(data: Any, path: Path) -> Bundle:
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object, found {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise BundleError(f"{path}: field 'schema' is {data.get('schema')!r}, expected {SCHEMA!r}: not an embserve-hil bundle")
    version = data.get("version")
    if version != VERSION:
        raise BundleError(f"{path}: unknown schema version {version!r}; this embserve-hil reads version {VERSION}")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise BundleError(f"{path}: required field {key!r} is missing")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise BundleError(f"{path}: field {key!r} has the wrong type ({type(data[key]).__name__})")
    test = data["test"]
    for key in ("nodeid", "outcome"):
        if not isinstance(test.get(key), str):
            raise BundleError(f"{path}: field 'test.{key}' is missing or not a string")
    firmware = None
    if data["firmware"] is not None:
        fw = data["firmware"]
        if not isinstance(fw.get("path"), str) or not isinstance(fw.get("sha256"), str):
            raise BundleError(f"{path}: field 'firmware' needs 'path' and 'sha256' strings")
        firmware = FirmwareRecord(fw["path"], fw["sha256"], fw.get("build_id"))
    services = []
    for i, s in enumerate(data["services"]):
        try:
            services.append(ServiceRecord(**s))
        except TypeError as e:
            raise BundleError(f"{path}: field 'services[{i}]': {e}") from None
    steps = [_step(path, i, s) for i, s in enumerate(data["timeline"])]
    _check_order(path, steps)
    for step in steps:
        if step.action == "deploy" and not any(s.sha256 == step.args.get("sha256") for s in services):
            raise BundleError(f"{path}: timeline step {step.index} deploys sha256 {step.args.get('sha256')!r},"
                              f" which no entry of 'services' holds")
        if step.endpoint not in data["endpoints"]:
            raise BundleError(f"{path}: timeline step {step.index} acts on {step.endpoint!r}, not one of 'endpoints'"
                              f" {data['endpoints']}")
    try:
        faults = [DeviceFault.from_dict(f) for f in data.get("faults", [])]
    except TypeError as e:
        raise BundleError(f"{path}: field 'faults': {e}") from None
    return Bundle(
        embserve_hil=data["embserve_hil"], created=data["created"], test=test, target=data["target"],
        board=data["board"], options=data["options"], seed=data["seed"], endpoints=list(data["endpoints"]),
        firmware=firmware, services=services, timeline=steps, consoles=dict(data["consoles"]),
        capture=data["capture"], faults=faults, end=dict(data.get("end") or {}), root=path.parent,
    )


def _step(path: Path, i: int, raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: timeline[{i}] is not an object")
    for key, kind in _STEP_FIELDS.items():
        if key not in raw:
            raise BundleError(f"{path}: timeline[{i}]: required field {key!r} is missing")
        if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
            raise BundleError(f"{path}: timeline[{i}]: field {key!r} has the wrong type ({type(raw[key]).__name__})")
    if raw["action"] not in ACTIONS:
        raise BundleError(f"{path}: timeline[{i}]: unknown action {raw['action']!r}; known: {', '.join(ACTIONS)}")
    return Step(raw["index"], raw["action"], raw["endpoint"], float(raw["wall_time"]),
                None if raw["device_time"] is None else float(raw["device_time"]), dict(raw["args"]))


def _check_order(path: Path, steps: list[Step]) -> None:
    last_device: dict[str, float] = {}
    for i, step in enumerate(steps):
        if step.index != i + 1:
            raise BundleError(f"{path}: timeline steps out of order: entry {i} has index {step.index}, expected {i + 1}")
        if i and step.wall_time < steps[i - 1].wall_time:
            raise BundleError(f"{path}: timeline steps out of order: step {step.index} ({step.action}) is at wall time"
                              f" {step.wall_time} s, before step {steps[i - 1].index} at {steps[i - 1].wall_time} s")
        if step.action == "boot":
            last_device.pop(step.endpoint, None)  # a new boot may restart the device's clock
        if step.device_time is not None:
            before = last_device.get(step.endpoint)
            if before is not None and step.device_time < before:
                raise BundleError(f"{path}: timeline steps out of order: step {step.index} ({step.action}) is at device"
                                  f" time {step.device_time} s, before the previous step's {before} s on {step.endpoint}")
            last_device[step.endpoint] = step.device_time
