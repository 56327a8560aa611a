"""Datagrams as they crossed a socket, kept in memory and written as pcap-ng (python-pcapng).

:class:`PacketCapture` has one pcap-ng *interface* per place it listens at
(the gateway's UDP socket, a node's SLIP line). Recording is an append of
(interface, time, addresses, payload): headers are only built when
:meth:`PacketCapture.write` writes the file, so a capture costs almost
nothing while a test runs.

Each datagram is written as a raw IPv4 (or IPv6) packet with a UDP header
(link type RAW). Wireshark and tshark decode UDP as CoAP on port 5683 only,
and the harness's gateway listens on a free port, so the gateway's port is
written as 5683 (``coap_port``); the real one is in the interface's
description and in bundle.json.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pcapng import FileWriter, blocks

from .ipv4 import build_udp, internet_checksum

LINKTYPE_RAW = 101  # the packet starts at the IP header, v4 or v6
COAP_PORT = 5683
_UDP_PROTOCOL = 17

HostPort = tuple[str, int]


class Datagram(NamedTuple):
    interface: int
    time: float  # time.time() when it crossed
    src: HostPort
    dst: HostPort
    payload: bytes


@dataclass
class Interface:
    name: str
    description: str
    server_port: int | None  # written as COAP_PORT


def plain_address(host: str) -> str:
    """``::ffff:127.0.0.1`` (an IPv4 peer of a dual-stack socket) as ``127.0.0.1``."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class PacketCapture:
    """Datagrams of one run, by interface; :meth:`write` makes the pcap-ng file."""

    def __init__(self) -> None:
        self.interfaces: list[Interface] = []
        self.datagrams: list[Datagram] = []

    def add_interface(self, name: str, description: str, server_port: int | None = None) -> int:
        self.interfaces.append(Interface(name, description, server_port))
        return len(self.interfaces) - 1

    def record(self, interface: int, src: HostPort, dst: HostPort, payload: bytes) -> None:
        self.datagrams.append(Datagram(interface, time.time(), src, dst, bytes(payload)))

    def sink(self, interface: int):
        """A ``(src, dst, payload)`` callable that records on ``interface`` (what the taps call)."""
        def record(src: HostPort, dst: HostPort, payload: bytes) -> None:
            self.datagrams.append(Datagram(interface, time.time(), src, dst, bytes(payload)))

        return record

    def write(self, path: str | Path, comment: str = "") -> int:
        """Write every datagram so far, in time order; returns how many."""
        options = {"shb_userappl": "embserve-hil"}
        if comment:
            options["opt_comment"] = comment
        shb = blocks.SectionHeader(options=options)
        for iface in self.interfaces:
            shb.new_member(
                blocks.InterfaceDescription,
                link_type=LINKTYPE_RAW,
                snaplen=0xFFFF,
                options={"if_name": iface.name, "if_description": iface.description},  # microseconds: the default
            )
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        ordered = sorted(self.datagrams, key=lambda d: d.time)
        with open(partial, "wb") as f:
            writer = FileWriter(f, shb)
            for d in ordered:
                packet = self._packet(d)
                block = shb.new_member(blocks.EnhancedPacket, interface_id=d.interface, packet_data=packet)
                micros = int(d.time * 1_000_000)
                block.timestamp_high, block.timestamp_low = micros >> 32, micros & 0xFFFFFFFF
                writer.write_block(block)
        partial.replace(path)
        return len(ordered)

    def _packet(self, d: Datagram) -> bytes:
        server = self.interfaces[d.interface].server_port
        src_port = COAP_PORT if d.src[1] == server else d.src[1]
        dst_port = COAP_PORT if d.dst[1] == server else d.dst[1]
        src, dst = ipaddress.ip_address(plain_address(d.src[0])), ipaddress.ip_address(plain_address(d.dst[0]))
        if isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address):
            return build_udp(str(src), src_port, str(dst), dst_port, d.payload)
        return _ipv6_udp(_v6(src), src_port, _v6(dst), dst_port, d.payload)


def _v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """One IPv6 packet for a mixed pair: the IPv4 side as its mapped address."""
    return address if isinstance(address, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{address}")


def _ipv6_udp(src: ipaddress.IPv6Address, src_port: int, dst: ipaddress.IPv6Address, dst_port: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", length, _UDP_PROTOCOL)
    header = struct.pack("!HHHH", src_port, dst_port, length, 0)
    checksum = internet_checksum(pseudo + header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", src_port, dst_port, length, checksum) + payload
    return struct.pack("!IHBB", 6 << 28, length, _UDP_PROTOCOL, 64) + src.packed + dst.packed + udp

