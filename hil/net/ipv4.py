"""IPv4 (RFC 791) and UDP (RFC 768) packets: strict parsing and building.

The parsers accept only what a well-behaved embedded stack sends over a
point-to-point link: one whole IPv4 packet per frame, no options it cannot
skip, no fragments, correct checksums and lengths. Anything else raises
:class:`PacketError`, whose :attr:`~PacketError.reason` is a short name the
bridge counts drops by.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

IPV4_HEADER = 20  # bytes, without options
UDP_HEADER = 8

FLAG_DF = 0x4000
FLAG_MF = 0x2000
_FLAG_RESERVED = 0x8000
_OFFSET_MASK = 0x1FFF

PROTOCOL_REASONS = {PROTO_TCP: "tcp", PROTO_ICMP: "icmp"}

Address = IPv4Address | str


def as_address(value: Address) -> IPv4Address:
    """``value`` as an address; an IPv4Address passes as it is (the constructor would re-parse its text)."""
    return value if isinstance(value, IPv4Address) else IPv4Address(value)


class PacketError(ValueError):
    """A packet that is not a well-formed IPv4 (or UDP) packet.

    ``reason`` is one of: ``truncated``, ``not_ipv4``, ``bad_header_length``,
    ``bad_length``, ``bad_ip_checksum``, ``fragment``, ``bad_flags``,
    ``bad_address``, ``bad_udp_length``, ``bad_udp_checksum``, ``bad_port``,
    ``not_udp`` (and the bridge adds its own); the message says what was found.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def internet_checksum(data: bytes | bytearray) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071).

    An odd trailing byte is padded with a zero byte. Over data that already
    contains its correct checksum the result is 0.
    """
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class Ipv4Packet:
    src: IPv4Address
    dst: IPv4Address
    protocol: int
    payload: bytes
    ttl: int = 64
    identification: int = 0
    dont_fragment: bool = True
    tos: int = 0

    def __str__(self) -> str:
        return f"IPv4 {self.src} -> {self.dst} proto {self.protocol}, {len(self.payload)} bytes"


@dataclass(frozen=True)
class UdpDatagram:
    src: IPv4Address
    src_port: int
    dst: IPv4Address
    dst_port: int
    payload: bytes

    def __str__(self) -> str:
        return f"UDP {self.src}:{self.src_port} -> {self.dst}:{self.dst_port}, {len(self.payload)} bytes"


def parse_ipv4(packet: bytes) -> Ipv4Packet:
    """One whole, unfragmented IPv4 packet with a correct header checksum.

    Options are skipped (their length is honoured, their content not read).
    The total length must match the packet exactly: a point-to-point link
    carries no padding, so extra bytes mean a framing error.
    """
    size = len(packet)
    if size < 1:
        raise PacketError("truncated", "empty packet")
    version = packet[0] >> 4
    if version != 4:
        raise PacketError("not_ipv4", f"IP version {version} (first byte 0x{packet[0]:02x})")
    if size < IPV4_HEADER:
        raise PacketError("truncated", f"{size} bytes, shorter than the {IPV4_HEADER}-byte IPv4 header")
    header_length = (packet[0] & 0x0F) * 4
    if header_length < IPV4_HEADER:
        raise PacketError("bad_header_length", f"IHL says {header_length} bytes, less than {IPV4_HEADER}")
    if size < header_length:
        raise PacketError("truncated", f"{size} bytes, shorter than the {header_length}-byte header it announces")
    total_length = int.from_bytes(packet[2:4], "big")
    if total_length < header_length:
        raise PacketError("bad_length", f"total length {total_length} is less than the header length {header_length}")
    if size < total_length:
        raise PacketError("truncated", f"{size} bytes received, total length says {total_length}")
    if size > total_length:
        raise PacketError("bad_length", f"{size} bytes received, total length says only {total_length}")
    if internet_checksum(packet[:header_length]) != 0:
        stated = int.from_bytes(packet[10:12], "big")
        raise PacketError("bad_ip_checksum", f"header checksum 0x{stated:04x} is wrong")
    flags_offset = int.from_bytes(packet[6:8], "big")
    if flags_offset & _FLAG_RESERVED:
        raise PacketError("bad_flags", "the reserved flag bit is set")
    if flags_offset & FLAG_MF or flags_offset & _OFFSET_MASK:
        raise PacketError(
            "fragment",
            f"fragment (MF={int(bool(flags_offset & FLAG_MF))}, offset {(flags_offset & _OFFSET_MASK) * 8}): reassembly is not supported",
        )
    return Ipv4Packet(
        src=IPv4Address(packet[12:16]),
        dst=IPv4Address(packet[16:20]),
        protocol=packet[9],
        payload=bytes(packet[header_length:total_length]),
        ttl=packet[8],
        identification=int.from_bytes(packet[4:6], "big"),
        dont_fragment=bool(flags_offset & FLAG_DF),
        tos=packet[1],
    )


def build_ipv4(
    src: Address,
    dst: Address,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    identification: int = 0,
    dont_fragment: bool = True,
    tos: int = 0,
) -> bytes:
    """An IPv4 packet without options, header checksum filled in."""
    total_length = IPV4_HEADER + len(payload)
    if total_length > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit in one IPv4 packet (65535 bytes at most)")
    if not 0 < ttl <= 255:
        raise ValueError(f"ttl={ttl}: must be 1..255")
    if not 0 <= identification <= 0xFFFF:
        raise ValueError(f"identification={identification}: must be 0..65535")
    if not 0 <= protocol <= 255:
        raise ValueError(f"protocol={protocol}: must be 0..255")
    header = bytearray(IPV4_HEADER)
    header[0] = 0x45
    header[1] = tos
    header[2:4] = total_length.to_bytes(2, "big")
    header[4:6] = identification.to_bytes(2, "big")
    header[6:8] = (FLAG_DF if dont_fragment else 0).to_bytes(2, "big")
    header[8] = ttl
    header[9] = protocol
    header[12:16] = as_address(src).packed
    header[16:20] = as_address(dst).packed
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header) + bytes(payload)


def _pseudo_header(src: IPv4Address, dst: IPv4Address, udp_length: int) -> bytes:
    return src.packed + dst.packed + bytes((0, PROTO_UDP)) + udp_length.to_bytes(2, "big")


def udp_checksum(src: Address, dst: Address, segment: bytes | bytearray) -> int:
    """Checksum over the pseudo header and the UDP segment (header checksum field as given)."""
    return internet_checksum(_pseudo_header(as_address(src), as_address(dst), len(segment)) + bytes(segment))


def parse_udp(packet: Ipv4Packet) -> UdpDatagram:
    """The UDP datagram inside ``packet``; length and checksum checked.

    A zero checksum means the sender computed none, which IPv4 allows.
    """
    if packet.protocol != PROTO_UDP:
        reason = PROTOCOL_REASONS.get(packet.protocol, "not_udp")
        raise PacketError(reason, f"IP protocol {packet.protocol}, only UDP ({PROTO_UDP}) is carried")
    segment = packet.payload
    if len(segment) < UDP_HEADER:
        raise PacketError("truncated", f"UDP segment of {len(segment)} bytes, shorter than its 8-byte header")
    length = int.from_bytes(segment[4:6], "big")
    if length != len(segment):
        raise PacketError("bad_udp_length", f"UDP length field {length}, but the IP packet carries {len(segment)} bytes")
    stated = int.from_bytes(segment[6:8], "big")
    if stated != 0 and udp_checksum(packet.src, packet.dst, segment) != 0:
        raise PacketError("bad_udp_checksum", f"UDP checksum 0x{stated:04x} is wrong")
    src_port = int.from_bytes(segment[0:2], "big")
    dst_port = int.from_bytes(segment[2:4], "big")
    if dst_port == 0:
        raise PacketError("bad_port", "UDP destination port 0")
    if packet.src.is_multicast or packet.src.is_unspecified or packet.src == _BROADCAST:
        raise PacketError("bad_address", f"source address {packet.src} cannot send unicast UDP")
    return UdpDatagram(packet.src, src_port, packet.dst, dst_port, bytes(segment[UDP_HEADER:]))


_BROADCAST = IPv4Address("255.255.255.255")


def build_udp(
    src: Address,
    src_port: int,
    dst: Address,
    dst_port: int,
    payload: bytes,
    *,
    ttl: int = 64,
    identification: int = 0,
    dont_fragment: bool = True,
) -> bytes:
    """An IPv4 packet carrying one UDP datagram, both checksums filled in."""
    for name, port in (("src_port", src_port), ("dst_port", dst_port)):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"{name}={port}: must be 0..65535")
    src, dst = as_address(src), as_address(dst)
    length = UDP_HEADER + len(payload)
    segment = bytearray(src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big") + length.to_bytes(2, "big") + b"\x00\x00")
    segment += payload
    checksum = udp_checksum(src, dst, segment)
    # a computed 0 is sent as 0xFFFF: 0 on the wire means "no checksum" (RFC 768)
    segment[6:8] = (checksum or 0xFFFF).to_bytes(2, "big")
    return build_ipv4(
        src, dst, PROTO_UDP, bytes(segment), ttl=ttl, identification=identification, dont_fragment=dont_fragment
    )
