"""LwM2M 1.1 composite operations from the gateway side.

All three address the client's LwM2M root (``/`` or its alternate root) and
carry SenML (LwM2M 1.1 Core 6.3 and 6.4, mapped to CoAP by the Transport
Bindings): Read-Composite is FETCH with
the paths as records without values and Accept naming the answer's format;
Observe-Composite is the same FETCH with Observe 0, each notification a
SenML pack of every observed path; Write-Composite is iPATCH with the values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from aiocoap import Message

from ..lwm2m import codecs
from ..lwm2m.model import Path
from .observe import Observation, ObservationHost


def parse_paths(paths: Iterable[Path | str], endpoint: str) -> tuple[Path, ...]:
    parsed = tuple(Path.parse(p) for p in paths)
    if not parsed:
        raise ValueError(f"a composite operation on {endpoint} needs at least one path")
    return parsed


def describe(paths: Iterable[Path]) -> str:
    return "composite " + ",".join(str(p) for p in paths)


class CompositeHost(ObservationHost, Protocol):
    """What an Observe-Composite needs of the gateway besides a plain observation's needs."""

    def observe_composite_request(self, endpoint: str, paths: tuple[Path, ...], fmt: int) -> tuple[str, Any]:
        """Send FETCH / with Observe and the paths: (registration id, aiocoap's request)."""

    async def read_composite_message(self, endpoint: str, paths: tuple[Path, ...], fmt: int, timeout: float | None) -> Message:
        """A Read-Composite's successful answer, undecoded."""


class CompositeObservation(Observation):
    """Observe-Composite: one observation of several paths; notifications carry them all (``path`` None)."""

    def __init__(self, gateway: CompositeHost, endpoint: str, paths: tuple[Path, ...], fmt: int | None, timeout: float | None):
        super().__init__(gateway, endpoint, None, fmt, timeout)
        self.paths = paths
        self._host = gateway

    def _kind(self) -> str:
        return "composite"

    def _where(self) -> str:
        return describe(self.paths)

    def _open(self, fmt: int | None) -> tuple[str, Any]:
        assert fmt is not None
        return self._host.observe_composite_request(self.endpoint, self.paths, fmt)

    async def _read_whole(self) -> Message:
        assert self._fmt is not None
        return await self._host.read_composite_message(self.endpoint, self.paths, self._fmt, self._timeout)


def request_body(paths: tuple[Path, ...], fmt: int) -> bytes:
    return codecs.encode_paths(list(paths), fmt)

