"""A SLIP bridge: IPv4/UDP from a device's serial line to the gateway on the host.

The device sees a point-to-point IP link. It addresses the gateway at
``device_gateway_ip`` (10.0.2.2 by default, as under QEMU's user network);
the bridge carries every UDP datagram sent there to the gateway's real
``host:port``, through one host UDP socket per device flow (device ip:port →
destination ip:port), so the gateway sees each flow as a client of its own
and answers it on that socket. Answers are wrapped back into IPv4/UDP from
the address the device wrote to, and SLIP-encoded down the line. It is a
small NAT: nothing reaches the device unless the device spoke first.

Everything that is not a well-formed, unfragmented IPv4/UDP packet to a
known destination is counted by reason in :attr:`SlipBridge.stats` and
dropped; nothing a device sends can stop the bridge. ICMP echo requests to
the gateway address are answered, so ``ping`` works.

::

    async with SlipBridge(link, gateway=("127.0.0.1", gw.port)) as bridge:
        ...
        await bridge.wait_for(lambda s: s.datagrams_to_gateway >= 1, "the registration")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any, Self

from . import icmp
from .ipv4 import (
    IPV4_HEADER,
    PROTO_ICMP,
    UDP_HEADER,
    PacketError,
    build_udp,
    parse_ipv4,
    parse_udp,
)
from .links import SlipLink, as_link
from .slip import SlipDecoder, slip_encode

HostPort = tuple[str, int]
FlowKey = tuple[IPv4Address, int, IPv4Address, int]  # device ip, device port, destination ip, destination port

MIN_MTU = 68  # RFC 791: every IPv4 module handles this much without fragmenting
DEVICE_QUEUE = 256  # frames waiting for the line; past that, answers are dropped (a 115200-baud line is slow)


@dataclass
class BridgeStats:
    """Counters of one bridge; :attr:`SlipBridge.stats` is live, :meth:`copy` freezes one."""

    frames_in: int = 0  # SLIP frames decoded from the device (good or not)
    frames_out: int = 0  # SLIP frames written to the device
    bytes_in: int = 0  # raw bytes read from the line
    bytes_out: int = 0  # raw bytes written to the line
    datagrams_to_gateway: int = 0  # UDP datagrams relayed host-side
    datagrams_to_device: int = 0  # UDP datagrams relayed device-side
    echo_replies: int = 0  # ICMP echo requests answered
    noise_bytes: int = 0  # line bytes outside any frame kept (before the first END, in dropped frames)
    flows: int = 0  # flows open now
    flows_opened: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())

    def copy(self) -> BridgeStats:
        return replace(self, dropped_by_reason=dict(self.dropped_by_reason))

    def summary(self) -> str:
        drops = ", ".join(f"{reason}={n}" for reason, n in sorted(self.dropped_by_reason.items())) or "none"
        return (
            f"frames in {self.frames_in} / out {self.frames_out}, bytes in {self.bytes_in} / out {self.bytes_out}, "
            f"datagrams to gateway {self.datagrams_to_gateway} / to device {self.datagrams_to_device}, "
            f"echo replies {self.echo_replies}, flows {self.flows} (opened {self.flows_opened}), "
            f"noise bytes {self.noise_bytes}, dropped {self.dropped} ({drops})"
        )


@dataclass
class Flow:
    """One device flow and the host socket that carries it."""

    device: tuple[IPv4Address, int]
    destination: tuple[IPv4Address, int]  # as the device addressed it
    target: HostPort  # where its datagrams really go
    local: HostPort = ("", 0)  # the host socket's address: what the gateway sees
    to_target: int = 0
    to_device: int = 0
    transport: asyncio.DatagramTransport | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return (
            f"{self.device[0]}:{self.device[1]} -> {self.destination[0]}:{self.destination[1]} "
            f"via {self.local[0]}:{self.local[1]} -> {self.target[0]}:{self.target[1]}"
        )


class _FlowSocket(asyncio.DatagramProtocol):
    def __init__(self, bridge: SlipBridge, flow: Flow):
        self.bridge = bridge
        self.flow = flow

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.bridge._from_host(self.flow, data)

    def error_received(self, exc: Exception) -> None:
        # a connected UDP socket reports ICMP port unreachable from the target here
        self.bridge._drop("target_unreachable", f"flow {self.flow}: {exc}")


class SlipBridge:
    """Relays IPv4/UDP between a device on a SLIP line and UDP services on the host.

    ``link``: a :class:`~hil.net.links.SlipLink`, a ``(StreamReader,
    StreamWriter)`` pair or an open pyserial port; the bridge closes it on exit.
    ``gateway``: the gateway's real ``(host, port)``. Datagrams the device
    sends to ``device_gateway_ip`` (any port, or only ``device_gateway_port``)
    go there; ``routes`` maps further device-side ``(ip, port)`` pairs to host
    ``(host, port)`` pairs. ``device_ip``: when given, packets from any other
    source are dropped (``wrong_source``). ``mtu``: largest IP packet in either
    direction; bigger device frames are dropped as ``oversize``, bigger
    answers as ``reply_over_mtu``.
    """

    def __init__(
        self,
        link: SlipLink | tuple[asyncio.StreamReader, asyncio.StreamWriter] | Any,
        gateway: HostPort,
        *,
        device_gateway_ip: str = "10.0.2.2",
        device_gateway_port: int | None = None,
        device_ip: str | None = None,
        routes: Mapping[HostPort, HostPort] | None = None,
        mtu: int = 1500,
        ttl: int = 64,
        answer_ping: bool = True,
        max_flows: int = 256,
        log_interval: float | None = 60.0,
        log: logging.Logger | None = None,
    ):
        if not MIN_MTU <= mtu <= 0xFFFF:
            raise ValueError(f"mtu={mtu}: an IPv4 MTU must be {MIN_MTU}..65535 bytes")
        if not 1 <= ttl <= 255:
            raise ValueError(f"ttl={ttl}: must be 1..255")
        if max_flows < 1:
            raise ValueError(f"max_flows={max_flows}: must be at least 1")
        self.link = as_link(link)
        self.gateway = _host_port(gateway, "gateway")
        self.device_gateway_ip = _address(device_gateway_ip, "device_gateway_ip")
        if device_gateway_port is not None and not 0 < device_gateway_port <= 0xFFFF:
            raise ValueError(f"device_gateway_port={device_gateway_port}: must be 1..65535 or None (any port)")
        self.device_gateway_port = device_gateway_port
        self.device_ip = _address(device_ip, "device_ip") if device_ip is not None else None
        self.routes: dict[tuple[IPv4Address, int], HostPort] = {}
        for key, target in (routes or {}).items():
            ip, port = _host_port(key, "routes key")
            self.routes[(_address(ip, "routes key"), port)] = _host_port(target, f"route for {ip}:{port}")
        self.mtu = mtu
        self.ttl = ttl
        self.answer_ping = answer_ping
        self.max_flows = max_flows
        self.log_interval = log_interval
        self.log = log or logging.getLogger("hil.net.slip")
        self.stats = BridgeStats()
        self.link_error: BaseException | None = None
        self._decoder = SlipDecoder(max_frame=mtu)
        self._decoder_drops_seen: dict[str, int] = {}
        self._flows: dict[FlowKey, Flow] = {}
        self._identification = 0
        self._to_device: asyncio.Queue[bytes] = asyncio.Queue(DEVICE_QUEUE)
        self._changed = asyncio.Event()
        self._link_closed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> Self:
        if self._tasks:
            raise RuntimeError(f"the SLIP bridge on {self.link.name} is already running")
        self._tasks = [
            asyncio.create_task(self._read_line(), name=f"slip-read-{self.link.name}"),
            asyncio.create_task(self._write_line(), name=f"slip-write-{self.link.name}"),
        ]
        if self.log_interval:
            self._tasks.append(asyncio.create_task(self._log_periodically(), name="slip-stats"))
        self.log.info(
            "SLIP bridge on %s: %s -> %s:%d (mtu %d)",
            self.link.name, self.device_gateway_ip, self.gateway[0], self.gateway[1], self.mtu,
        )
        return self

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for flow in self._flows.values():
            if flow.transport is not None:
                flow.transport.close()
        self._flows.clear()
        self.stats.flows = 0
        with contextlib.suppress(OSError, ConnectionError):
            await self.link.close()
        self.log.info("SLIP bridge on %s closed: %s", self.link.name, self.stats.summary())

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ observing

    @property
    def flows(self) -> list[Flow]:
        return list(self._flows.values())

    @property
    def link_closed(self) -> bool:
        """True once the line has ended (the device side hung up or failed)."""
        return self._link_closed.is_set()

    async def wait_for(self, condition: Callable[[BridgeStats], bool], what: str, timeout: float = 5.0) -> BridgeStats:
        """Wait until ``condition(stats)`` holds; a :class:`TimeoutError` shows the stats seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition(self.stats):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}; SLIP bridge: {self.stats.summary()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.stats.copy()

    async def wait_link_closed(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self._link_closed.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"the SLIP line {self.link.name} is still open after {timeout} s") from None

    # ------------------------------------------------------------------ device -> host

    async def _read_line(self) -> None:
        try:
            while True:
                data = await self.link.read()
                if not data:
                    self.log.info("SLIP line %s ended", self.link.name)
                    break
                self.stats.bytes_in += len(data)
                for frame in self._decoder.feed(data):
                    self.stats.frames_in += 1
                    await self._from_device(frame)
                self._count_decoder_drops()
                self._changed.set()
        except (OSError, ConnectionError) as exc:
            self.link_error = exc
            self.log.warning("SLIP line %s failed: %s", self.link.name, exc)
        finally:
            self._link_closed.set()
            self._changed.set()

    def _count_decoder_drops(self) -> None:
        self.stats.noise_bytes = self._decoder.noise_bytes
        for reason, count in self._decoder.dropped.items():
            new = count - self._decoder_drops_seen.get(reason, 0)
            if new:
                self._drop(reason, f"{new} SLIP frame(s)", new)
                self._decoder_drops_seen[reason] = count

    async def _from_device(self, frame: bytes) -> None:
        try:
            packet = parse_ipv4(frame)
            if self.device_ip is not None and packet.src != self.device_ip:
                raise PacketError("wrong_source", f"source {packet.src}, the device is {self.device_ip}")
            if packet.protocol == PROTO_ICMP and self.answer_ping and packet.dst == self.device_gateway_ip:
                self._send_to_device(icmp.echo_reply(packet, ttl=self.ttl, identification=self._next_identification()))
                self.stats.echo_replies += 1
                return
            datagram = parse_udp(packet)
            if datagram.src_port == 0:
                raise PacketError("bad_port", "UDP source port 0: answers could not reach the device")
            key = (datagram.src, datagram.src_port, datagram.dst, datagram.dst_port)
            flow = self._flows.get(key) or await self._open_flow(key)
            assert flow.transport is not None
            flow.transport.sendto(datagram.payload)
            flow.to_target += 1
            self.stats.datagrams_to_gateway += 1
        except PacketError as exc:
            self._drop(exc.reason, f"{len(frame)}-byte frame: {exc}")
        except Exception:  # a bug here must not cut the device off
            self.log.exception("SLIP bridge: could not relay a %d-byte frame", len(frame))
            self._drop("internal_error", "see the exception above")

    def _route(self, dst: IPv4Address, port: int) -> HostPort | None:
        target = self.routes.get((dst, port))
        if target is not None:
            return target
        gateway_port = self.device_gateway_port is None or port == self.device_gateway_port
        return self.gateway if dst == self.device_gateway_ip and gateway_port else None

    async def _open_flow(self, key: FlowKey) -> Flow:
        src, src_port, dst, dst_port = key
        target = self._route(dst, dst_port)
        if target is None:
            raise PacketError("no_route", f"nothing on the host answers for {dst}:{dst_port}")
        if len(self._flows) >= self.max_flows:
            raise PacketError("too_many_flows", f"{len(self._flows)} flows open already (max_flows={self.max_flows})")
        flow = Flow(device=(src, src_port), destination=(dst, dst_port), target=target)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _FlowSocket(self, flow), remote_addr=target)
        except OSError as exc:
            raise PacketError("target_unreachable", f"cannot open a socket to {target[0]}:{target[1]}: {exc}") from exc
        flow.transport = transport
        flow.local = tuple(transport.get_extra_info("sockname")[:2])  # type: ignore[assignment]
        self._flows[key] = flow
        self.stats.flows = len(self._flows)
        self.stats.flows_opened += 1
        self.log.info("SLIP flow opened: %s", flow)
        return flow

    # ------------------------------------------------------------------ host -> device

    def _from_host(self, flow: Flow, payload: bytes) -> None:
        size = IPV4_HEADER + UDP_HEADER + len(payload)
        if size > self.mtu:
            self._drop("reply_over_mtu", f"answer of {size} bytes on flow {flow} exceeds the MTU of {self.mtu}")
            return
        packet = build_udp(
            flow.destination[0], flow.destination[1], flow.device[0], flow.device[1], payload,
            ttl=self.ttl, identification=self._next_identification(),
        )
        if self._send_to_device(packet):
            flow.to_device += 1
            self.stats.datagrams_to_device += 1

    def _send_to_device(self, packet: bytes) -> bool:
        try:
            self._to_device.put_nowait(slip_encode(packet))
        except asyncio.QueueFull:
            self._drop("device_queue_full", f"{DEVICE_QUEUE} frames already wait for the line")
            return False
        return True

    async def _write_line(self) -> None:
        while True:
            frame = await self._to_device.get()
            try:
                await self.link.write(frame)
            except (OSError, ConnectionError) as exc:
                self._drop("line_write_failed", f"{self.link.name}: {exc}")
                continue
            self.stats.frames_out += 1
            self.stats.bytes_out += len(frame)
            self._changed.set()

    def _next_identification(self) -> int:
        self._identification = (self._identification + 1) & 0xFFFF
        return self._identification

    # ------------------------------------------------------------------ accounting

    def _drop(self, reason: str, detail: str, count: int = 1) -> None:
        drops = self.stats.dropped_by_reason
        drops[reason] = drops.get(reason, 0) + count
        # the first of each kind is worth a warning, the rest would flood the log
        level = logging.WARNING if drops[reason] == count else logging.DEBUG
        self.log.log(level, "SLIP bridge dropped (%s): %s", reason, detail)
        self._changed.set()

    async def _log_periodically(self) -> None:
        assert self.log_interval
        last = ""
        while True:
            await asyncio.sleep(self.log_interval)
            summary = self.stats.summary()
            if summary != last:
                self.log.info("SLIP bridge on %s: %s", self.link.name, summary)
                last = summary


def _address(value: str | IPv4Address, what: str) -> IPv4Address:
    try:
        return IPv4Address(value)
    except ValueError as exc:
        raise ValueError(f"{what}={value!r} is not an IPv4 address: {exc}") from None


def _host_port(value: Any, what: str) -> HostPort:
    try:
        host, port = value
        port = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={value!r}: expected a (host, port) pair") from None
    if not isinstance(host, str) or not 0 < port <= 0xFFFF:
        raise ValueError(f"{what}={value!r}: expected a host name and a port 1..65535")
    return host, port
