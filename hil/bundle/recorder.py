"""Recording a run into a bundle directory.

A :class:`Recorder` is made before the devices come up; it holds the run's
:class:`~hil.bundle.timeline.Timeline` (targets and the deployer record into
it), its :class:`~hil.net.capture.PacketCapture` (the gateway's and the SLIP
bridges' taps write into it) and the devices it was told about.
:meth:`Recorder.write` turns all of it into ``bundle.json``, the pcap-ng
file, copies of the console logs and of every deployed ``service.json`` with
its ELF. Recording itself is appends to lists; the files are written once, at
the end.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from .. import __version__
from ..faults import DeviceFault
from ..net.capture import COAP_PORT, PacketCapture
from ..secret import redact, redact_text
from ..service import symbols
from ..service.manifest import ManifestError, parse_manifest
from .schema import Bundle, FirmwareRecord, ServiceRecord, sha256_file
from .timeline import Timeline

CAPTURE_NAME = "capture.pcapng"


class RecordedDevice(Protocol):
    """What the recorder reads from a target (duck-typed: the bundle sits below the targets)."""

    endpoint: str
    firmware_elf: Path | None

    def device_time(self) -> float | None: ...


class Recorder:
    """See the module docs. ``options`` are the run's settings as the user gave them."""

    def __init__(self, *, nodeid: str, target: str, board: Any = None, options: dict[str, Any] | None = None,
                 seed: int = 0):
        self.nodeid = nodeid
        self.target = target
        self.board = board
        self.options = dict(options or {})
        self.seed = seed
        self.timeline = Timeline()
        self.capture = PacketCapture()
        self.devices: list[Any] = []
        self.gateway: tuple[str, int] | None = None
        self._end: dict[str, float | None] = {}  # device clocks read as the devices stopped

    def gateway_sink(self, host: str, port: int):
        """The sink for the gateway's tap (:func:`hil.gateway.capture.tap`)."""
        self.gateway = (host, port)
        index = self.capture.add_interface(
            "gateway", f"the LwM2M gateway's UDP socket {host}:{port} (port written as {COAP_PORT})", port)
        return self.capture.sink(index)

    def add_device(self, device: Any) -> None:
        if device not in self.devices:
            self.devices.append(device)

    def device_stopping(self, device: Any) -> None:
        """Read the device's clock before it stops (the bundle's end time)."""
        self._end[device.endpoint] = device.device_time()

    @property
    def faults(self) -> list[DeviceFault]:
        found = [f for d in self.devices for f in d.faults.faults]
        return sorted(found, key=lambda f: f.time)

    def write(self, directory: Path, *, outcome: str, message: str = "", duration: float = 0.0) -> Path:
        """Write the bundle into ``directory`` (made if needed); returns the path of bundle.json."""
        directory.mkdir(parents=True, exist_ok=True)
        end_wall = self.timeline.elapsed()
        end_device = {d.endpoint: self._end.get(d.endpoint, d.device_time()) for d in self.devices}
        capture = None
        if self.capture.interfaces:
            if self.gateway is not None:
                for iface in self.capture.interfaces:
                    iface.server_port = iface.server_port or self.gateway[1]
            count = self.capture.write(directory / CAPTURE_NAME, comment=f"embserve-hil {self.nodeid}")
            capture = {
                "file": CAPTURE_NAME,
                "gateway": None if self.gateway is None else f"{self.gateway[0]}:{self.gateway[1]}",
                "coap_port": COAP_PORT,
                "datagrams": count,
                "interfaces": [i.name for i in self.capture.interfaces],
            }
        bundle = Bundle(
            embserve_hil=__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            test={"nodeid": self.nodeid, "outcome": outcome, "message": message, "duration": round(duration, 3)},
            target=self.target,
            board=_board(self.board),
            options=_plain(redact(self.options)),  # passwords, tokens and keys never reach a bundle
            seed=self.seed,
            endpoints=[d.endpoint for d in self.devices] or sorted({s.endpoint for s in self.timeline.steps}),
            firmware=self._firmware(),
            services=self._services(directory),
            timeline=list(self.timeline.steps),
            consoles=self._consoles(directory),
            capture=capture,
            faults=self.faults,
            end={"wall_time": round(end_wall, 6), "device_time": end_device},
            root=directory,
        )
        return bundle.write(directory)

    def _firmware(self) -> FirmwareRecord | None:
        for device in self.devices:
            elf = device.firmware_elf
            if elf is not None and Path(elf).is_file():
                path = Path(elf).resolve()
                return FirmwareRecord(str(path), _file_digest(str(path), path.stat().st_mtime_ns), symbols.gnu_build_id(path))
        return None

    def _services(self, directory: Path) -> list[ServiceRecord]:
        records = []
        for step in self.timeline.steps:
            sha = step.args.get("sha256")
            if step.action != "deploy" or any(r.sha256 == sha for r in records):
                continue
            data = self.timeline.packages[sha]
            name = str(step.args.get("service"))
            folder = Path("services") / f"{name}-{sha[:12]}"
            (directory / folder).mkdir(parents=True, exist_ok=True)
            (directory / folder / "service.json").write_bytes(data)
            record = ServiceRecord(name, int(step.args.get("version", 0)), sha, str(folder / "service.json"),
                                   step.args.get("reference"), step.args.get("manifest_digest"))
            try:
                elf = symbols.service_elf_for(parse_manifest(data).service)
            except ManifestError:
                elf = None
            if elf is not None:
                shutil.copyfile(elf, directory / folder / "service.elf")
                record.elf = str(folder / "service.elf")
                record.elf_sha256 = hashlib.sha256((directory / folder / "service.elf").read_bytes()).hexdigest()
            records.append(record)
        return records

    def _consoles(self, directory: Path) -> dict[str, str]:
        consoles = {}
        for device in self.devices:
            log = getattr(device.console, "log_path", None)
            if log is None or not Path(log).is_file():
                continue
            target = Path("consoles") / Path(log).name
            (directory / target.parent).mkdir(parents=True, exist_ok=True)
            # A console may have echoed a credential given on its command line.
            (directory / target).write_text(redact_text(Path(log).read_text(errors="replace")))
            consoles[device.endpoint] = str(target)
        return consoles


@lru_cache(maxsize=16)
def _file_digest(path: str, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def _board(board: Any) -> dict[str, Any] | None:
    if board is None:
        return None
    source = getattr(board, "source", None)
    contents = None
    if source is not None:
        try:
            contents = Path(source).read_text(encoding="utf-8")
        except OSError:
            contents = None
    return {"name": board.name, "source": None if source is None else str(source), "contents": contents}


def _plain(value: Any) -> Any:
    """Options as JSON takes them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
