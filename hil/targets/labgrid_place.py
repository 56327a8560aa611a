"""A place of a labgrid lab, held for a test run: reserve, acquire, use, always release.

labgrid (the ``embserve-hil[labgrid]`` extra) is used as a library: its
``ClientSession`` talks to the coordinator, its reservations queue the
runners, its ``Target``/``RemotePlace`` turn the place's resources into
resource objects, and its power and flash drivers act on them.

* :class:`hil.targets.labgrid_session.CoordinatorSession`: labgrid's client
  session on a thread and event loop of its own.
* :class:`PlaceLease`: ``--lg-place NAME|PATTERN|LIST`` (fnmatch patterns,
  commas between several) or the ``RemotePlace`` of an environment file
  (``--lg-env``). It reserves every candidate place through labgrid's
  reservations (filter ``name=<place>``), acquires the first one the
  coordinator allocates to it and cancels the others; while it waits it
  prints a progress line naming who holds what; past the acquire timeout it
  gives up with one line naming the places and their holders. Two runs, or
  two pytest-xdist workers, never get the same place: the coordinator
  allocates a place to one reservation at a time.
* Release: :meth:`PlaceLease.release` at the end of the run (pytest's session
  teardown, also after Ctrl-C or SIGTERM), and a *guardian* process started
  before the place is acquired (:mod:`hil.targets.labgrid_session`)
  that releases it if this process dies without doing so (SIGKILL included).
  labgrid itself keeps a place acquired when its client vanishes.

Coordinator address: the explicit one, else ``LG_COORDINATOR``, else the
environment file's ``coordinator_address`` option, else labgrid's default
``127.0.0.1:20408``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fnmatch
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .labgrid_session import (
    LABGRID_MISSING,
    CoordinatorSession,
    PlaceError,
    coordinator_address,
    require_labgrid,
)

if not LABGRID_MISSING:
    import grpc
    from labgrid import Environment, Target, target_factory
    from labgrid.driver import ExternalPowerDriver
    from labgrid.exceptions import NoDriverFoundError, NoResourceFoundError
    from labgrid.remote.common import ReservationState
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
    from labgrid.resource.remote import RemotePlace, RemotePlaceManager
    from labgrid.util.proxy import proxymanager

__all__ = ["PlaceError", "LeaseSpec", "PlaceLease", "coordinator_address", "place_patterns", "select_places",
           "require_labgrid"]

POLL_INTERVAL = 0.2  # seconds between looks at our reservations (they expire unless polled within 60 s)
PROGRESS_INTERVAL = 5.0
#: resources a place's console can be, in order of preference
SERIAL_CLASSES = ("NetworkSerialPort", "USBSerialPort", "RawSerialPort")
#: labgrid's power driver for each exported power resource (as labgrid-client's ``power`` picks them)
POWER_DRIVERS = {
    "NetworkPowerPort": "NetworkPowerDriver",
    "NetworkUSBPowerPort": "USBPowerDriver",
    "NetworkSiSPMPowerPort": "SiSPMPowerDriver",
    "PDUDaemonPort": "PDUDaemonDriver",
    "TasmotaPowerPort": "TasmotaPowerDriver",
    "NetworkYKUSHPowerPort": "YKUSHPowerDriver",
}


def place_patterns(spec: str) -> list[str]:
    """``bench-a``, ``'k64f-*'``, ``bench-a,bench-b``: the names or patterns, in order."""
    patterns = [p for p in spec.replace(",", " ").split() if p]
    if not patterns:
        raise PlaceError(f"--lg-place {spec!r}: no place name or pattern given")
    return patterns


def select_places(patterns: list[str], places: dict[str, Any]) -> list[str]:
    """Places whose name (or an alias) matches a pattern: exact names as given, patterns by fnmatch."""
    chosen: list[str] = []
    for pattern in patterns:
        for name in sorted(places):
            names = [name, *(a.split(":", 1)[-1] for a in places[name].aliases)]
            if any(fnmatch.fnmatchcase(n, pattern) for n in names) and name not in chosen:
                chosen.append(name)
    return chosen


def _held_by(place: Any) -> str:
    if place.acquired:
        since = datetime.fromtimestamp(place.changed).strftime("%H:%M:%S")
        return f"held by {place.acquired} since {since}"
    if place.reservation:
        return f"reserved for another run (reservation {place.reservation})"
    return "free"


@dataclass
class LeaseSpec:
    """What to hold: a place spec and/or an environment file, where, and how long to wait for it."""

    place: str | None = None
    env_file: str | None = None
    coordinator: str | None = None
    acquire_timeout: float = 300.0
    log_dir: Path | None = None  # for the guardian's log


class PlaceLease:
    """One acquired place and the labgrid target made from it; see the module docs."""

    def __init__(self, spec: LeaseSpec, progress: Callable[[str], None] = lambda line: None):
        require_labgrid()
        if not spec.place and not spec.env_file:
            raise PlaceError("a labgrid place is needed: --lg-place NAME|PATTERN|LIST or --lg-env FILE")
        self.spec = spec
        self.progress = progress
        try:
            self.env = Environment(str(Path(spec.env_file).resolve())) if spec.env_file else None
            self.address = coordinator_address(spec.coordinator, spec.env_file)
        except Exception as e:  # labgrid's config errors: a missing file, bad YAML, unknown keys
            raise PlaceError(f"--lg-env {spec.env_file}: {e}") from None
        self.session: CoordinatorSession | None = None
        self.place: str | None = None  # the acquired place
        self.token: str | None = None  # its reservation
        self.waited = 0.0  # seconds from asking to acquired
        self.target: Any = None  # labgrid Target of the place, made on first use
        self._guardian: subprocess.Popen[bytes] | None = None
        self._released = threading.Event()

    # -- acquiring ------------------------------------------------------------

    def patterns(self) -> list[str]:
        if self.spec.place:
            return place_patterns(self.spec.place)
        assert self.env is not None
        names = []
        for role in self.env.config.get_targets().values():
            resources, _ = target_factory.normalize_config(role)
            names += list(resources.get("RemotePlace", {}))
        if not names:
            raise PlaceError(f"--lg-env {self.spec.env_file}: no target there has a RemotePlace resource")
        return names

    def acquire(self) -> "PlaceLease":
        """Connect, reserve, wait, acquire; :class:`PlaceError` (one line) when that cannot be done."""
        patterns = self.patterns()
        self.session = CoordinatorSession(self.address).start()
        try:
            self.session.run(lambda: self._acquire(patterns))
        except BaseException:
            self.release()
            raise
        atexit.register(self.release)
        return self

    async def _acquire(self, patterns: list[str]) -> None:
        assert self.session is not None and self.session.client is not None
        client = self.session.client
        spec = ", ".join(patterns)
        candidates = select_places(patterns, client.places)
        if not candidates:
            known = ", ".join(sorted(client.places)) or "none"
            raise PlaceError(f"labgrid place {spec!r} is unknown to the coordinator at {self.address}; places there: {known}")
        usable, problems = [], []
        for name in candidates:
            problem = self._console_problem(name)
            (problems if problem else usable).append(problem or name)
        if not usable:
            raise PlaceError("; ".join(problems))
        if problems:
            self.progress(f"labgrid: skipping {'; '.join(problems)}")

        started = time.monotonic()
        tokens: dict[str, str] = {}
        try:
            for name in usable:
                request = pb.CreateReservationRequest(
                    filters={"main": pb.Reservation.Filter(filter={"name": name})}, prio=0.0)
                tokens[name] = (await client.stub.CreateReservation(request)).reservation.token
            self._start_guardian(list(tokens.values()))
            deadline = started + self.spec.acquire_timeout
            next_progress = started + 1.0
            while self.place is None:
                for name, token in tokens.items():
                    reply = await client.stub.PollReservation(pb.PollReservationRequest(token=token))
                    state = ReservationState(reply.reservation.state)
                    if state is ReservationState.allocated and await self._try_acquire(name):
                        self.place, self.token = name, token
                        break
                if self.place is not None:
                    break
                now = time.monotonic()
                if now >= deadline:
                    raise PlaceError(self._holders(usable, f"not free within the acquire timeout of"
                                                           f" {self.spec.acquire_timeout:g} s (--lg-acquire-timeout)"))
                if now >= next_progress:
                    self.progress(f"labgrid: waiting {now - started:.0f} s of {self.spec.acquire_timeout:g} s for"
                                  f" {self._holders(usable, '')}")
                    next_progress = now + PROGRESS_INTERVAL
                await asyncio.sleep(POLL_INTERVAL)
        except grpc.aio.AioRpcError as e:
            raise PlaceError(f"labgrid place {spec}: the coordinator at {self.address} failed: {e.details()}") from None
        finally:
            for name, token in tokens.items():
                if token != self.token:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await client.stub.CancelReservation(pb.CancelReservationRequest(token=token))
        self.waited = time.monotonic() - started
        self.progress(f"labgrid: acquired place {self.place} as {self.session.user}"
                      f"{f' after waiting {self.waited:.1f} s' if self.waited >= 1.0 else ''}")

    async def _try_acquire(self, name: str) -> bool:
        assert self.session is not None and self.session.client is not None
        client = self.session.client
        try:
            await client.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=name))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return False  # taken meanwhile outside the reservations: keep waiting
            raise
        await client.sync_with_coordinator()
        return True

    def _matching(self, name: str) -> list[tuple[str, str, str, str, Any]]:
        """The exported resources the place's matches take: (exporter, group, class, name, entry)."""
        assert self.session is not None and self.session.client is not None
        client = self.session.client
        place = client.places[name]
        found = []
        for exporter, groups in client.resources.items():
            for group, resources in groups.items():
                for resource_name, entry in resources.items():
                    path = (exporter, group, entry.cls, resource_name)
                    if entry.data and place.getmatch(path):
                        found.append((*path, entry))
        return found

    def _console_problem(self, name: str) -> str | None:
        assert self.session is not None and self.session.client is not None
        place = self.session.client.places[name]
        matches = ", ".join(str(m) for m in place.matches) or "none"
        resources = self._matching(name)
        if not resources:
            return (f"labgrid place {name}: no exported resource matches it (matches: {matches});"
                    f" is its exporter running?")
        if not any(cls in SERIAL_CLASSES for _, _, cls, _, _ in resources):
            have = ", ".join(sorted({cls for _, _, cls, _, _ in resources}))
            return (f"labgrid place {name} has no serial port resource ({' or '.join(SERIAL_CLASSES[:2])}); it has: {have}"
                    f" (matches: {matches})")
        return None

    def _holders(self, names: list[str], what: str) -> str:
        assert self.session is not None and self.session.client is not None
        places = self.session.client.places
        held = "; ".join(f"{n} {_held_by(places[n])}" for n in names if n in places)
        subject = f"labgrid place {names[0]}" if len(names) == 1 else f"labgrid places {', '.join(names)}"
        return f"{subject} {what}: {held}" if what else held

    # -- releasing ------------------------------------------------------------

    def _start_guardian(self, tokens: list[str]) -> None:
        log = (self.spec.log_dir / "labgrid-guardian.log") if self.spec.log_dir else None
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") if log else open(os.devnull, "wb") as out:
            self._guardian = subprocess.Popen(
                [sys.executable, "-m", "hil.targets.labgrid_session", "guard", self.address, *tokens],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a kill of this run's process group must not take it along
                env={**os.environ, "LG_HOSTNAME": self.session.client.gethostname(),  # type: ignore[union-attr]
                     "LG_USERNAME": self.session.client.getuser()},  # type: ignore[union-attr]
            )

    def release(self) -> None:
        """Release the place and cancel its reservation; safe to call twice and from atexit."""
        if self._released.is_set():
            return
        self._released.set()
        session, place, token = self.session, self.place, self.token
        try:
            if session is not None and session.connected and place is not None:
                async def release() -> None:
                    client = session.client
                    assert client is not None
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await client.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=place))
                    if token:
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            await client.stub.CancelReservation(pb.CancelReservationRequest(token=token))
                    await client.sync_with_coordinator()

                session.run(release, timeout=15.0)
                self.progress(f"labgrid: released place {place}")
                self._stop_guardian(done=True)
        except Exception as e:  # the guardian takes over
            self.progress(f"labgrid: releasing place {place} failed ({e}); the guardian process releases it")
        finally:
            self._stop_guardian(done=False)
            if session is not None:
                session.close()
            with contextlib.suppress(Exception):
                atexit.unregister(self.release)

    def _stop_guardian(self, *, done: bool) -> None:
        guardian, self._guardian = self._guardian, None
        if guardian is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if done:
                guardian.stdin.write(b"released\n")  # type: ignore[union-attr]
            guardian.stdin.close()  # type: ignore[union-attr]
        try:
            guardian.wait(20.0)
        except subprocess.TimeoutExpired:
            guardian.kill()
            guardian.wait()

    # -- using the place ----------------------------------------------------------

    def lost(self) -> str | None:
        """Why the place can no longer be used (its exporter went away, someone took it), or None."""
        session = self.session
        if self.place is None or session is None or session.client is None:
            return None
        if not session.connected:
            return f"labgrid place {self.place}: lost the coordinator at {self.address}"
        place = session.client.places.get(self.place)
        if place is None:
            return f"labgrid place {self.place} was deleted from the coordinator"
        if place.acquired != session.user:
            return f"labgrid place {self.place} is no longer ours: {_held_by(place)}"
        gone = []
        for exporter, group, cls, name in place.acquired_resources:
            entry = session.client.resources.get(exporter, {}).get(group, {}).get(name)
            if entry is None or not entry.data:
                gone.append(f"{exporter}/{group}/{cls}/{name}")
            elif not entry.avail:
                gone.append(f"{exporter}/{group}/{cls}/{name} (unavailable)")
        if gone:
            exporters = sorted({g.split("/", 1)[0] for g in gone})
            return (f"labgrid place {self.place}: exporter {', '.join(exporters)} went away;"
                    f" missing {', '.join(gone)}")
        return None

    def labgrid_target(self) -> Any:
        """labgrid's ``Target`` for the place (the environment file's, with its drivers, when given)."""
        if self.target is not None:
            return self.target
        assert self.session is not None and self.place is not None
        manager = RemotePlaceManager.get()
        manager.session = self.session.client  # as labgrid-client does: our session, not a new one
        manager.loop = self.session.loop
        target = None
        if self.env is not None:
            for role, config in self.env.config.get_targets().items():
                resources, _ = target_factory.normalize_config(config)
                if self.place in resources.get("RemotePlace", {}):
                    target = self.env.get_target(role)
                    break
        if target is None:
            target = Target(self.place, env=self.env)
            RemotePlace(target, name=self.place)
        self.target = target
        return target

    def resource(self, classes: tuple[str, ...]) -> Any | None:
        target = self.labgrid_target()
        for cls in classes:
            for resource in target.resources:
                if type(resource).__name__ == cls:
                    return resource
        return None

    def console_url(self) -> str:
        """The place's console as pyserial opens it (as labgrid's SerialDriver does)."""
        resource = self.resource(SERIAL_CLASSES)
        if resource is None:
            raise PlaceError(f"labgrid place {self.place} has no serial port resource ({' or '.join(SERIAL_CLASSES[:2])})")
        if type(resource).__name__ != "NetworkSerialPort":
            return resource.port  # a serial port on this machine (a local place of an environment file)
        host, port = proxymanager.get_host_and_port(resource)  # through SSH for isolated exporters
        if resource.protocol == "raw":
            return f"socket://{host}:{port}"
        # A pty or a USB-serial bridge behind ser2net acknowledges no modem-line change.
        return f"rfc2217://{host}:{port}?ign_set_control&timeout=3"

    def power_driver(self) -> Any | None:
        """labgrid's power driver for the place: the environment file's, else one for its power resource."""
        target = self.labgrid_target()
        with contextlib.suppress(NoDriverFoundError):
            return target.get_driver("PowerProtocol")
        for resource in target.resources:
            cls = type(resource).__name__
            if cls == "ExternalPowerPort":
                driver = ExternalPowerDriver(target, None, cmd_on=resource.cmd_on, cmd_off=resource.cmd_off,
                                             cmd_cycle=resource.cmd_cycle)
            elif cls in POWER_DRIVERS:
                driver = target_factory.class_from_string(POWER_DRIVERS[cls])(target, None)
            else:
                continue
            target.activate(driver)
            return driver
        return None

    def flash_driver(self, name: str, options: dict[str, Any]) -> Any:
        """A labgrid driver that loads firmware (``load(path)``), bound to the place's resources."""
        target = self.labgrid_target()
        with contextlib.suppress(NoDriverFoundError):
            return target.get_driver(name)  # configured in the environment file
        try:
            cls = target_factory.class_from_string(name)
        except KeyError:
            raise PlaceError(f"labgrid place {self.place}: the board file names flash driver {name!r}, which labgrid"
                             f" does not have") from None
        if not hasattr(cls, "load"):
            raise PlaceError(f"labgrid place {self.place}: {name} cannot load firmware (it has no load());"
                             f" name a driver with labgrid's BootstrapProtocol, e.g. OpenOCDDriver")
        try:
            driver = cls(target, None, **options)
            target.activate(driver)
        except (NoResourceFoundError, Exception) as e:
            raise PlaceError(f"labgrid place {self.place}: cannot flash with {name}: {e}") from None
        return driver

    @property
    def exporter_host(self) -> str:
        resource = self.resource(("NetworkSerialPort",))
        return resource.host if resource is not None else "localhost"

    @property
    def board_tag(self) -> str | None:
        if self.session is None or self.session.client is None or self.place is None:
            return None
        return self.session.client.places[self.place].tags.get("board")
