"""Collect a deployed service's readings as they arrive at the gateway.

A :class:`ReadingCollector` observes the resource a service's output is
mapped to (``/3303/x/5700`` for the temperature service) and keeps every
notification with its arrival time, so a test can wait for N readings, for a
value, or look at the spacing between them. A device that pushes its
readings with LwM2M 1.1 Send instead is heard the same way: every Send from
the node that carries the path is a reading too.

A reading also carries the device time at which it was produced, when
something can tell: ``device_time``, a callable given the notification
(``Target.device_time_of``: the emulator's clock when the message left the
device; a source that reads a time the firmware sends, such as SenML's, fits
the same slot). It may answer later than the notification arrives (an
emulator's log is read on its own schedule), so readings without it are
looked up again whenever they are used. :meth:`ReadingCollector.intervals`
uses device times when every reading in question has one: then the spacing
is the device's, whatever the host did meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from .lwm2m import Path
from .progress import waiting

TEMPERATURE_VALUE = (3303, 5700)
#: wall seconds a wait gives device times that are not known yet before it returns without them
STAMP_WAIT = 0.25


class ReadingTimeout(AssertionError):
    """Readings did not arrive in time; says what did arrive."""


@dataclass(frozen=True)
class Reading:
    value: Any
    time: float  # wall clock (time.time()) when the gateway received it
    path: Path
    device_time: float | None = None  # device seconds when the device sent it, when known


DeviceClock = Callable[[Any], "float | None"]  # a notification -> the device time it was sent at, or None


class ReadingCollector:
    """``async with ReadingCollector(gateway, "node1") as r: await r.wait(3, timeout=10)``.

    ``path`` defaults to ``resource`` (object, resource) of the first instance
    of its object the node registers: ``/3303/x/5700`` unless told otherwise.
    The first notification (the current value, sent when the observation
    starts) is kept apart as :attr:`initial` and not counted as a reading
    unless ``include_initial`` is set.
    """

    def __init__(self, gateway: Any, endpoint: str, path: str | Path | None = None, *, include_initial: bool = False,
                 resource: tuple[int, int] = TEMPERATURE_VALUE, device_time: DeviceClock | None = None):
        self.gateway = gateway
        self.resource = resource
        self.device_time = device_time
        self._unstamped: dict[int, Any] = {}  # index in readings -> its notification, while its device time is unknown
        self.endpoint = endpoint
        self._path = Path.parse(path) if path is not None else None
        self.include_initial = include_initial
        self.readings: list[Reading] = []
        self.initial: Reading | None = None
        self._observation: Any = None
        self._remove_report_listener: Callable[[], None] | None = None
        self._changed = asyncio.Event()

    @property
    def path(self) -> Path | None:
        return self._path

    async def _find_path(self, timeout: float) -> Path:
        obj, res = self.resource
        deadline = time.monotonic() + timeout
        while True:
            reg = self.gateway.registration(self.endpoint)
            instances = reg.available_instances.get(obj, [])
            if instances:
                return Path(obj, instances[0], res)
            if time.monotonic() >= deadline:
                raise ReadingTimeout(
                    f"{self.endpoint} has no /{obj} instance after {timeout:g} s; it registered "
                    f"{', '.join(reg.object_paths)}"
                )
            await asyncio.sleep(0.05)

    async def start(self, timeout: float = 10.0) -> "ReadingCollector":
        if self._path is None:
            self._path = await self._find_path(timeout)
        self._observation = await self.gateway.observe(self.endpoint, self._path, timeout=timeout)
        # The answer to the Observe request is the current value; nothing else can
        # have arrived before the listener is added (callbacks run on later loop turns).
        if self._observation.latest is not None:
            self._add(self._observation.latest, True)
        self._observation.add_listener(lambda n: self._add(n, False))
        add_report_listener = getattr(self.gateway, "add_report_listener", None)
        if add_report_listener is not None:
            self._remove_report_listener = add_report_listener(self._on_report)
        return self

    def _on_report(self, notification: Any) -> None:
        # notifications come through the collector's own observation; Sends come only this way
        if notification.kind == "send" and notification.endpoint == self.endpoint and self._path in notification.content:
            self._add(notification, False)

    def _add(self, notification: Any, initial: bool) -> None:
        stamp = self.device_time(notification) if self.device_time is not None else None
        reading = Reading(notification.value(self._path), notification.timestamp, self._path, stamp)
        if initial and not self.include_initial:
            self.initial = reading
        else:
            if stamp is None and self.device_time is not None:
                self._unstamped[len(self.readings)] = notification
            self.readings.append(reading)
        self._changed.set()

    def _stamp(self) -> None:
        """Device times that were not known when their readings arrived."""
        assert self.device_time is not None or not self._unstamped
        for index, notification in list(self._unstamped.items()):
            stamp = self.device_time(notification)  # type: ignore[misc]
            if stamp is not None:
                self.readings[index] = replace(self.readings[index], device_time=stamp)
                del self._unstamped[index]

    async def stop(self) -> None:
        if self._remove_report_listener is not None:
            self._remove_report_listener()
            self._remove_report_listener = None
        if self._observation is not None:
            self._observation.cancel()

    async def __aenter__(self) -> "ReadingCollector":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- waiting ---------------------------------------------------------------
    async def wait_until(self, predicate: Callable[[list[Reading]], bool], timeout: float, what: str) -> list[Reading]:
        with waiting(f"{self.endpoint} {self._path}: {what}", timeout):
            return await self._wait_until(predicate, timeout, what)

    async def _wait_until(self, predicate: Callable[[list[Reading]], bool], timeout: float, what: str) -> list[Reading]:
        deadline = time.monotonic() + timeout
        while not predicate(self.readings):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadingTimeout(
                    f"{self.endpoint} {self._path}: {what} not seen within {timeout:g} s; "
                    f"readings so far: {self.values() or 'none'}"
                    + (f" (initial value {self.initial.value})" if self.initial else "")
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        await self._await_stamps()
        return list(self.readings)

    async def _await_stamps(self, timeout: float = STAMP_WAIT) -> None:
        """Give device times that are not known yet a moment to arrive (an emulator notes them on its own
        schedule, within a fraction of a second)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stamp()
        while self._unstamped and loop.time() < deadline:
            await asyncio.sleep(0.005)
            self._stamp()

    async def wait(self, count: int, timeout: float) -> list[Reading]:
        """Wait until ``count`` readings (in total) have arrived."""
        return (await self.wait_until(lambda r: len(r) >= count, timeout, f"{count} readings"))[:count]

    async def wait_for_value(self, value: float, timeout: float, tolerance: float = 1e-3, *, since: int | None = None) -> Reading:
        """Wait for a reading within ``tolerance`` of ``value`` arriving after now, or from index ``since``
        on (taken before a request whose answer may come after its reading)."""
        start = len(self.readings) if since is None else since
        match = lambda r: any(abs(float(x.value) - value) <= tolerance for x in r[start:])  # noqa: E731
        readings = await self.wait_until(match, timeout, f"a reading of {value}")
        return next(x for x in readings[start:] if abs(float(x.value) - value) <= tolerance)

    async def wait_more(self, count: int, timeout: float) -> list[Reading]:
        """Wait for ``count`` readings beyond those already here; returns the new ones."""
        start = len(self.readings)
        got = await self.wait_until(lambda r: len(r) >= start + count, timeout, f"{count} more readings")
        return got[start : start + count]

    def values(self) -> list[Any]:
        return [r.value for r in self.readings]

    def intervals(self, readings: list[Reading] | None = None) -> list[float]:
        """Seconds between consecutive readings: in device time when every one of them carries it,
        else in wall-clock time at the gateway (multiply by the target's ``time_scale`` for device time)."""
        return self._gaps(readings, wall_scale=1.0)

    def device_intervals(self, readings: list[Reading] | None = None, *, time_scale: float = 1.0) -> list[float]:
        """Device seconds between consecutive readings: their device times when every one carries
        it, else the wall-clock intervals times ``time_scale`` (the target's device seconds per wall second)."""
        return self._gaps(readings, wall_scale=time_scale)

    def _gaps(self, readings: list[Reading] | None, wall_scale: float) -> list[float]:
        self._stamp()
        rs = self.readings if readings is None else [self._current(r) for r in readings]
        if rs and all(r.device_time is not None for r in rs):
            return [b.device_time - a.device_time for a, b in zip(rs, rs[1:])]  # type: ignore[operator]
        return [(b.time - a.time) * wall_scale for a, b in zip(rs, rs[1:])]

    def _current(self, reading: Reading) -> Reading:
        """``reading`` as the collector holds it now (its device time may have been found since)."""
        for held in self.readings:
            if held.time == reading.time and held.value == reading.value and held.path == reading.path:
                return held
        return reading

    def summary(self) -> str:
        self._stamp()
        if not self.readings:
            return f"{self.endpoint} {self._path}: no readings"
        device = all(r.device_time is not None for r in self.readings)
        when: Callable[[Reading], float] = (lambda r: r.device_time) if device else (lambda r: r.time)  # type: ignore[assignment,return-value]
        t0 = when(self.readings[0])
        shown = ", ".join(f"{r.value:.2f}@+{when(r) - t0:.2f}s" if isinstance(r.value, float) else f"{r.value}@+{when(r) - t0:.2f}s"
                          for r in self.readings)
        n = len(self.readings)
        clock = "device-time" if device else "wall-clock"
        return f"{self.endpoint} {self._path}: {n} reading{'' if n == 1 else 's'} (value@{clock} offset): {shown}"


def check_real_sensor(values: list[float], *, plausible: tuple[float, float], constant: bool, what: str) -> None:
    """What readings of a sensor nobody set can show: AssertionError naming ``what`` when they cannot be real.

    Each value lies in ``plausible`` (low, high); and more than one value are
    not all identical unless the sensor is ``constant``: a real sensor shows
    noise or drift, so a run of one value is a stuck sensor, a dead bus, or a
    firmware reporting its default.
    """
    low, high = plausible
    outside = [v for v in values if not low <= float(v) <= high]
    if outside:
        raise AssertionError(f"{what}: {outside} outside the plausible range [{low:g}, {high:g}]"
                             f" (board file field 'temperature_range'); all readings: {values}")
    if not constant and len(values) > 1 and len(set(values)) == 1:
        raise AssertionError(
            f"{what}: all {len(values)} readings are {values[0]}: a real sensor shows noise or drift, so this looks"
            f" like a stuck sensor or a firmware reporting a default value (if the bench's sensor really never"
            f" changes, say so in the board file: constant_sensors = [...])"
        )
