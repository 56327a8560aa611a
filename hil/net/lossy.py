"""A lossy UDP link: a relay between devices and a gateway that loses datagrams on purpose, reproducibly.

::

    async with LossyLink(("127.0.0.1", gateway.port), loss=0.3, seed=7) as link:
        await target.bootstrap(link.uri)        # the device talks to the link ...
        ...                                     # ... and the gateway sees it as usual

Every device address that sends to the link gets a socket of its own towards
the gateway, so the gateway sees one address per device, as it would without
the link, and its answers find their way back. Each datagram is dropped with
probability ``uplink_loss`` (device → gateway) or ``downlink_loss`` (gateway →
device), decided by one ``random.Random(seed)``: the same seed gives the same
sequence of decisions. ``cut()`` and ``restore()`` (or ``outage(seconds)``)
drop everything for a while, as an unplugged cable does; ``rule(direction,
datagram)``, when given, drops exactly the datagrams it returns True for
(``"uplink"`` or ``"downlink"``), e.g. every answer to one request. ``stats``
counts what passed and what was dropped, per direction.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from dataclasses import dataclass, field
from typing import Callable, Self

DropRule = Callable[[str, bytes], bool]  # (direction "uplink" or "downlink", datagram) -> drop it

log = logging.getLogger("hil.net.lossy")
MAX_DATAGRAM = 65535


@dataclass
class Direction:
    passed: int = 0
    dropped: int = 0

    def summary(self) -> str:
        total = self.passed + self.dropped
        share = 100.0 * self.dropped / total if total else 0.0
        return f"{self.passed} passed, {self.dropped} dropped ({share:.1f} %)"


@dataclass
class LinkStats:
    uplink: Direction = field(default_factory=Direction)  # device -> gateway
    downlink: Direction = field(default_factory=Direction)  # gateway -> device

    def summary(self) -> str:
        return f"uplink {self.uplink.summary()}; downlink {self.downlink.summary()}"


def _check_loss(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
    return float(value)


class LossyLink:
    """See the module docs. ``host`` is where the link listens (loopback by default)."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        loss: float = 0.0,
        uplink_loss: float | None = None,
        downlink_loss: float | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        rule: DropRule | None = None,
    ):
        self.upstream = upstream
        self.uplink_loss = _check_loss("uplink_loss", loss if uplink_loss is None else uplink_loss)
        self.downlink_loss = _check_loss("downlink_loss", loss if downlink_loss is None else downlink_loss)
        self.seed = seed
        self.host = host
        self.rule = rule
        self.port = 0
        self.stats = LinkStats()
        self._random = random.Random(seed)
        self._front: socket.socket | None = None
        self._flows: dict[tuple[str, int], socket.socket] = {}
        self._cut = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def uri(self) -> str:
        """``coap://host:port`` of the link, for a device's bootstrap."""
        return f"coap://{self.host}:{self.port}"

    def set_loss(self, loss: float | None = None, *, uplink: float | None = None, downlink: float | None = None) -> None:
        if loss is not None:
            uplink = downlink = loss
        if uplink is not None:
            self.uplink_loss = _check_loss("uplink_loss", uplink)
        if downlink is not None:
            self.downlink_loss = _check_loss("downlink_loss", downlink)

    def cut(self) -> None:
        """Drop every datagram, both ways, until :meth:`restore`."""
        self._cut = True

    def restore(self) -> None:
        self._cut = False

    async def outage(self, seconds: float) -> None:
        self.cut()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.restore()

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> Self:
        self._loop = asyncio.get_running_loop()
        front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        front.setblocking(False)
        front.bind((self.host, 0))
        self._front = front
        self.port = front.getsockname()[1]
        self._loop.add_reader(front, self._from_device)
        log.info("lossy link %s -> %s:%d (loss up %.0f %%, down %.0f %%, seed %d)",
                 self.uri, *self.upstream, 100 * self.uplink_loss, 100 * self.downlink_loss, self.seed)
        return self

    async def close(self) -> None:
        loop = self._loop
        for sock in [*self._flows.values(), *([self._front] if self._front else [])]:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock)
            sock.close()
        self._flows.clear()
        self._front = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ relaying

    def _lost(self, direction: str, probability: float, data: bytes) -> bool:
        # one draw per datagram even when the link is cut, so the sequence depends only on the traffic
        draw = self._random.random()
        return self._cut or draw < probability or (self.rule is not None and self.rule(direction, data))

    def _from_device(self) -> None:
        assert self._front is not None
        while True:
            try:
                data, device = self._front.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("lossy link: receive from devices failed: %s", exc)
                return
            if self._lost("uplink", self.uplink_loss, data):
                self.stats.uplink.dropped += 1
                continue
            flow = self._flows.get(device) or self._open_flow(device)
            try:
                flow.send(data)
                self.stats.uplink.passed += 1
            except OSError as exc:  # the gateway is gone: as on a real link, the datagram is lost
                self.stats.uplink.dropped += 1
                log.debug("lossy link: %s -> gateway failed: %s", device, exc)

    def _open_flow(self, device: tuple[str, int]) -> socket.socket:
        assert self._loop is not None
        flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flow.setblocking(False)
        flow.bind((self.host, 0))
        flow.connect(self.upstream)
        self._flows[device] = flow
        self._loop.add_reader(flow, self._from_gateway, flow, device)
        return flow

    def _from_gateway(self, flow: socket.socket, device: tuple[str, int]) -> None:
        while True:
            try:
                data = flow.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. the gateway's port closed (ICMP): nothing to relay
                log.debug("lossy link: receive from the gateway for %s failed: %s", device, exc)
                return
            if self._lost("downlink", self.downlink_loss, data):
                self.stats.downlink.dropped += 1
                continue
            try:
                assert self._front is not None
                self._front.sendto(data, device)
                self.stats.downlink.passed += 1
            except OSError as exc:
                self.stats.downlink.dropped += 1
                log.debug("lossy link: gateway -> %s failed: %s", device, exc)
