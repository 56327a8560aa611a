"""The record of every action the harness took on its devices, in order.

Targets, the deployer and the pytest plugin call :meth:`Timeline.record`
when they act on a device (boot, bootstrap, sensor values, service inputs,
deploys, removals, reboots); a bundle keeps the list and a replay performs
it again. Each step carries the wall-clock time since the timeline started
and, where the backend has device time (the simulator's virtual clock), the
device's own clock; a replay paces itself by device time when both runs have
it and by wall time otherwise.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: what a step may be, in the words of bundle.json
ACTIONS = ("boot", "bootstrap", "sensor", "input", "deploy", "remove", "reboot")


@dataclass
class Step:
    index: int  # 1, 2, ... in the order the actions were taken
    action: str  # one of ACTIONS
    endpoint: str
    wall_time: float  # seconds since the timeline started
    device_time: float | None = None  # the device's clock, in seconds, where the backend has one
    args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items() if k not in ("service_json",))
        when = f"device {self.device_time:.3f} s" if self.device_time is not None else f"wall {self.wall_time:.3f} s"
        return f"step {self.index}: {self.action} {self.endpoint} {args} ({when})".replace("  ", " ")


class Timeline:
    """Steps in the order they were taken; cheap enough to be always on."""

    def __init__(self) -> None:
        self.started = time.time()
        self._t0 = time.monotonic()
        self.steps: list[Step] = []
        self.listeners: list[Callable[[Step], None]] = []
        self.clocks: dict[str, Callable[[], float | None]] = {}  # endpoint -> its device clock (targets add theirs)
        self.packages: dict[str, bytes] = {}  # sha256 -> service.json bytes of every deploy

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def record(self, action: str, endpoint: str, device_time: float | None = None, **args: Any) -> Step:
        if action not in ACTIONS:
            raise ValueError(f"unknown timeline action {action!r}; known: {', '.join(ACTIONS)}")
        if device_time is None and endpoint in self.clocks:
            device_time = self.clocks[endpoint]()
        step = Step(len(self.steps) + 1, action, endpoint, round(self.elapsed(), 6),
                    None if device_time is None else round(device_time, 6), dict(args))
        self.steps.append(step)
        for listener in self.listeners:
            listener(step)
        return step

    def add_package(self, service_json: bytes) -> str:
        """Keep a deployed service.json; returns its sha256, which the deploy step names."""
        digest = hashlib.sha256(service_json).hexdigest()
        self.packages[digest] = bytes(service_json)
        return digest
