"""A node's SLIP line as a point-to-point interface of a network: SLIP frames to and from a TUN device.

What ``slattach`` does for a real serial line, for a line the harness holds
(a Renode socket terminal, a serial port): every SLIP frame from the node is
written to a TUN device (bare IPv4 packets, ``IFF_NO_PI``) as it is, and every
packet the kernel routes to the TUN goes down the line as a SLIP frame. The
node is then at its own address on the network the TUN belongs to (e.g. a
fleet's namespace, with a host route to the node through the TUN), and the
gateway sees its datagrams from that address; no NAT, nothing rewritten.

Unlike :class:`hil.net.SlipBridge`, nothing is parsed here: the kernel's
IPv4 stack judges the packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Self

from .links import SlipLink
from .slip import SlipDecoder, slip_encode

MAX_PACKET = 65535


@dataclass
class TunRelayStats:
    to_network: int = 0  # packets from the line written to the TUN
    to_node: int = 0  # packets from the TUN written to the line
    write_errors: int = 0  # packets the TUN refused (malformed, no route...)


class SlipTunRelay:
    """``async with SlipTunRelay(link, tun_fd):`` relays until closed; closing closes the line, not the TUN."""

    def __init__(self, link: SlipLink, tun_fd: int, *, log: logging.Logger | None = None):
        self.link = link
        self.tun_fd = tun_fd
        self.log = log or logging.getLogger("hil.net.tun")
        self.stats = TunRelayStats()
        self._decoder = SlipDecoder()
        self._reader: asyncio.Task[None] | None = None
        self._to_node: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        os.set_blocking(self.tun_fd, False)
        loop.add_reader(self.tun_fd, self._from_network)
        self._reader = loop.create_task(self._read_line(), name=f"SLIP-TUN {self.link.name}")
        self._writer = loop.create_task(self._write_line(), name=f"TUN-SLIP {self.link.name}")
        return self

    async def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.tun_fd)
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._reader = self._writer = None
        await self.link.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_line(self) -> None:
        while data := await self.link.read():
            for frame in self._decoder.feed(data):
                try:
                    os.write(self.tun_fd, frame)
                    self.stats.to_network += 1
                except OSError as exc:  # a malformed packet: the kernel says EINVAL; the line goes on
                    self.stats.write_errors += 1
                    self.log.debug("%s: TUN refused a %d-byte packet: %s", self.link.name, len(frame), exc)
        self.log.info("SLIP line %s ended", self.link.name)

    def _from_network(self) -> None:
        while True:
            try:
                packet = os.read(self.tun_fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as exc:
                self.log.warning("%s: reading the TUN failed: %s", self.link.name, exc)
                asyncio.get_running_loop().remove_reader(self.tun_fd)
                return
            try:
                self._to_node.put_nowait(slip_encode(packet))
            except asyncio.QueueFull:
                pass  # the line is slow; IP's senders retransmit, as on a real serial link

    async def _write_line(self) -> None:
        while True:
            frame = await self._to_node.get()
            await self.link.write(frame)
            self.stats.to_node += 1
