"""ICMP echo (RFC 792): enough to answer a device's ``ping`` of its gateway."""

from __future__ import annotations

from .ipv4 import PROTO_ICMP, Ipv4Packet, PacketError, build_ipv4, internet_checksum

ECHO_REPLY = 0
ECHO_REQUEST = 8
ICMP_HEADER = 8


def echo_reply(request: Ipv4Packet, *, ttl: int = 64, identification: int = 0) -> bytes:
    """The IPv4 packet answering the echo request ``request`` (same id, sequence and data).

    Raises :class:`PacketError` (reason ``icmp``) when ``request`` is some
    other ICMP message, and ``bad_icmp`` when it is malformed.
    """
    message = request.payload
    if request.protocol != PROTO_ICMP:
        raise PacketError("not_icmp", f"IP protocol {request.protocol} is not ICMP")
    if len(message) < ICMP_HEADER:
        raise PacketError("bad_icmp", f"ICMP message of {len(message)} bytes, shorter than its 8-byte header")
    if internet_checksum(message) != 0:
        raise PacketError("bad_icmp", f"ICMP checksum 0x{int.from_bytes(message[2:4], 'big'):04x} is wrong")
    if message[0] != ECHO_REQUEST or message[1] != 0:
        raise PacketError("icmp", f"ICMP type {message[0]} code {message[1]}: only echo requests are answered")
    reply = bytearray(message)
    reply[0] = ECHO_REPLY
    reply[2:4] = b"\x00\x00"
    reply[2:4] = internet_checksum(reply).to_bytes(2, "big")
    return build_ipv4(request.dst, request.src, PROTO_ICMP, bytes(reply), ttl=ttl, identification=identification)


def echo_request(src: str, dst: str, ident: int, sequence: int, data: bytes = b"") -> bytes:
    """An IPv4 echo request; what a device's ``ping`` sends (used by tests and benchmarks)."""
    message = bytearray(bytes((ECHO_REQUEST, 0, 0, 0)) + ident.to_bytes(2, "big") + sequence.to_bytes(2, "big") + data)
    message[2:4] = internet_checksum(message).to_bytes(2, "big")
    return build_ipv4(src, dst, PROTO_ICMP, bytes(message))
