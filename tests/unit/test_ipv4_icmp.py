"""ICMP echo: the reply a device's ping of its gateway gets."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from hil.net import icmp
from hil.net.ipv4 import (
    PROTO_ICMP,
    PacketError,
    build_ipv4,
    internet_checksum,
    parse_ipv4,
)


def test_echo_request_vector() -> None:
    # type 8, code 0, id 1, seq 2, data "ab": words 0800+0000+0001+0002+6162 = 6965, checksum 969a
    request = parse_ipv4(icmp.echo_request("10.0.2.15", "10.0.2.2", 1, 2, b"ab"))
    assert request.payload == bytes.fromhex("0800969a000100026162")


def test_echo_reply_swaps_addresses_and_keeps_id_sequence_and_data() -> None:
    request = parse_ipv4(icmp.echo_request("10.0.2.15", "10.0.2.2", 0x1234, 7, b"ping data"))
    reply = parse_ipv4(icmp.echo_reply(request, ttl=64, identification=9))
    assert (reply.src, reply.dst, reply.protocol, reply.identification) == (
        IPv4Address("10.0.2.2"), IPv4Address("10.0.2.15"), PROTO_ICMP, 9
    )
    message = reply.payload
    assert message[0] == icmp.ECHO_REPLY and message[1] == 0
    assert message[4:] == request.payload[4:]
    assert internet_checksum(message) == 0


def test_other_icmp_messages_are_not_answered() -> None:
    unreachable = bytearray(b"\x03\x03\x00\x00\x00\x00\x00\x00")
    unreachable[2:4] = internet_checksum(unreachable).to_bytes(2, "big")
    packet = parse_ipv4(build_ipv4("10.0.2.15", "10.0.2.2", PROTO_ICMP, bytes(unreachable)))
    with pytest.raises(PacketError, match="ICMP type 3 code 3") as caught:
        icmp.echo_reply(packet)
    assert caught.value.reason == "icmp"


def test_broken_echo_requests_are_refused() -> None:
    good = parse_ipv4(icmp.echo_request("10.0.2.15", "10.0.2.2", 1, 1, b"x"))
    corrupt = bytearray(good.payload)
    corrupt[-1] ^= 0xFF
    with pytest.raises(PacketError, match="ICMP checksum") as caught:
        icmp.echo_reply(parse_ipv4(build_ipv4("10.0.2.15", "10.0.2.2", PROTO_ICMP, bytes(corrupt))))
    assert caught.value.reason == "bad_icmp"
    with pytest.raises(PacketError, match="shorter than its 8-byte header"):
        icmp.echo_reply(parse_ipv4(build_ipv4("10.0.2.15", "10.0.2.2", PROTO_ICMP, b"\x08\x00")))
