"""The device end of a SLIP line, in Python: a minimal IPv4/UDP host.

Tests and benchmarks use it to stand where a board's firmware stands, so
the bridge is driven by exactly the bytes a device would put on its UART.
Every frame it receives is parsed with the same strict checks the bridge
applies, so a wrong checksum or length from the bridge shows up in
:attr:`SlipEndpoint.rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
from ipaddress import IPv4Address
from typing import Any, Self

from .ipv4 import (
    PROTO_UDP,
    Ipv4Packet,
    PacketError,
    UdpDatagram,
    build_udp,
    parse_ipv4,
    parse_udp,
)
from .links import SlipLink, as_link
from .slip import SlipDecoder, slip_encode


class SlipEndpoint:
    """IPv4 host ``ip`` on a SLIP link: ``async with SlipEndpoint(link) as host:``."""

    def __init__(self, link: SlipLink | Any, ip: str = "10.0.2.15", *, max_frame: int = 1500):
        self.link = as_link(link)
        self.ip = IPv4Address(ip)
        self.decoder = SlipDecoder(max_frame=max_frame)
        self.received: asyncio.Queue[Ipv4Packet] = asyncio.Queue()
        self.rejected: list[PacketError] = []
        self._task: asyncio.Task[None] | None = None
        self._identification = 0

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._read(), name=f"slip-endpoint-{self.ip}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError, ConnectionError):
            await self.link.close()

    async def _read(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await self.link.read():
                for frame in self.decoder.feed(data):
                    try:
                        self.received.put_nowait(parse_ipv4(frame))
                    except PacketError as exc:
                        self.rejected.append(exc)

    # ------------------------------------------------------------------ sending

    async def send_raw(self, data: bytes) -> None:
        """Bytes on the line as they are: noise, broken frames, several frames at once."""
        await self.link.write(data)

    async def send_packet(self, packet: bytes) -> None:
        await self.link.write(slip_encode(packet))

    async def send_udp(self, src_port: int, dst: str, dst_port: int, payload: bytes, **fields: Any) -> None:
        self._identification = (self._identification + 1) & 0xFFFF
        fields.setdefault("identification", self._identification)
        await self.send_packet(build_udp(self.ip, src_port, dst, dst_port, payload, **fields))

    # ------------------------------------------------------------------ receiving

    async def receive(self, timeout: float = 5.0) -> Ipv4Packet:
        """The next well-formed IPv4 packet received."""
        try:
            return await asyncio.wait_for(self.received.get(), timeout)
        except TimeoutError:
            rejected = "; ".join(str(e) for e in self.rejected[-3:]) or "none"
            raise TimeoutError(
                f"{self.ip}: no IPv4 packet within {timeout} s ({self.decoder.frames} frames decoded, "
                f"SLIP drops {dict(self.decoder.dropped) or 'none'}, rejected packets: {rejected})"
            ) from None

    async def receive_udp(self, timeout: float = 5.0) -> tuple[Ipv4Packet, UdpDatagram]:
        """The next packet, which must be a valid UDP datagram to this host."""
        packet = await self.receive(timeout)
        if packet.protocol != PROTO_UDP:
            raise AssertionError(f"{self.ip}: expected UDP, received {packet}")
        if packet.dst != self.ip:
            raise AssertionError(f"{self.ip}: received a packet for someone else: {packet}")
        return packet, parse_udp(packet)
