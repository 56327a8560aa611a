"""IPv4/UDP building and strict parsing: checksum vectors and every rejection reason."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from hil.net.ipv4 import (
    PROTO_UDP,
    PacketError,
    build_ipv4,
    build_udp,
    internet_checksum,
    parse_ipv4,
    parse_udp,
    udp_checksum,
)

DEVICE = "10.0.2.15"
GATEWAY = "10.0.2.2"


def refix_ip_checksum(packet: bytes | bytearray) -> bytes:
    """The packet with its header checksum recomputed, after a test edited the header."""
    packet = bytearray(packet)
    header_length = (packet[0] & 0x0F) * 4
    packet[10:12] = b"\x00\x00"
    packet[10:12] = internet_checksum(bytes(packet[:header_length])).to_bytes(2, "big")
    return bytes(packet)


def edited(packet: bytes, offset: int, value: bytes) -> bytes:
    out = bytearray(packet)
    out[offset : offset + len(value)] = value
    return refix_ip_checksum(out)


def reason_of(packet: bytes) -> str:
    with pytest.raises(PacketError) as caught:
        parse_udp(parse_ipv4(packet))
    return caught.value.reason


# ---------------------------------------------------------------- checksum vectors


def test_rfc_1071_example_sum() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2 == 0x220D


def test_odd_length_is_padded_with_a_zero_byte() -> None:
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF


def test_checksum_over_data_with_its_checksum_is_zero() -> None:
    data = bytearray(bytes.fromhex("0001f203f4f5f6f7") + b"\x00\x00")
    data[8:10] = internet_checksum(data).to_bytes(2, "big")
    assert internet_checksum(data) == 0


def test_ipv4_header_checksum_vector() -> None:
    # 192.168.0.1 -> 192.168.0.199, UDP, total length 0x73, DF, TTL 64: words sum to 479e, checksum b861
    header = bytes.fromhex("4500007300004000401100 00c0a80001c0a800c7".replace(" ", ""))
    assert internet_checksum(header) == 0xB861
    assert build_ipv4("192.168.0.1", "192.168.0.199", PROTO_UDP, bytes(0x73 - 20))[10:12] == b"\xb8\x61"


def test_udp_packet_vector_computed_by_hand() -> None:
    # 10.0.2.15:1234 -> 10.0.2.2:5683 "hello". UDP words, pseudo header first:
    # 0a00+020f+0a00+0202+0011+000d + 04d2+1633+000d+0000 + 6865+6c6c+6f00 = 17712 -> 7713, checksum 88ec
    # IP header: 4500+0021+0000+4000+4011+0a00+020f+0a00+0202 = dd43, checksum 22bc
    packet = build_udp(DEVICE, 1234, GATEWAY, 5683, b"hello", identification=0)
    assert packet == bytes.fromhex("4500002100004000401122bc0a00020f0a00020204d21633000d88ec68656c6c6f")
    assert udp_checksum(DEVICE, GATEWAY, packet[20:]) == 0


def test_a_computed_zero_udp_checksum_is_sent_as_ffff() -> None:
    # with a two-byte payload w the sum becomes S0 + w; w = ~S0 makes the checksum 0
    base = build_udp(DEVICE, 1000, GATEWAY, 2000, b"\x00\x00")
    payload = base[26:28]
    packet = build_udp(DEVICE, 1000, GATEWAY, 2000, payload)
    assert packet[26:28] == b"\xff\xff"
    assert parse_udp(parse_ipv4(packet)).payload == payload


# ---------------------------------------------------------------- round trips


def test_build_then_parse_round_trip() -> None:
    packet = build_udp(DEVICE, 40000, GATEWAY, 5683, b"\x44\x02coap", ttl=17, identification=0xBEEF)
    ip = parse_ipv4(packet)
    assert (ip.src, ip.dst, ip.protocol, ip.ttl, ip.identification, ip.dont_fragment) == (
        IPv4Address(DEVICE), IPv4Address(GATEWAY), PROTO_UDP, 17, 0xBEEF, True
    )
    datagram = parse_udp(ip)
    assert (datagram.src_port, datagram.dst_port, datagram.payload) == (40000, 5683, b"\x44\x02coap")
    assert str(datagram) == "UDP 10.0.2.15:40000 -> 10.0.2.2:5683, 6 bytes"


def test_header_options_are_skipped() -> None:
    plain = build_udp(DEVICE, 1, GATEWAY, 2, b"data")
    # IHL 6: one 4-byte option word (NOP NOP NOP EOL) between header and UDP
    with_option = bytearray(plain[:20] + b"\x01\x01\x01\x00" + plain[20:])
    with_option[0] = 0x46
    with_option[2:4] = len(with_option).to_bytes(2, "big")
    datagram = parse_udp(parse_ipv4(refix_ip_checksum(with_option)))
    assert datagram.payload == b"data"


def test_zero_udp_checksum_means_none_and_is_accepted() -> None:
    packet = bytearray(build_udp(DEVICE, 1, GATEWAY, 2, b"unchecked"))
    packet[26:28] = b"\x00\x00"
    assert parse_udp(parse_ipv4(bytes(packet))).payload == b"unchecked"


# ---------------------------------------------------------------- rejections


GOOD = build_udp(DEVICE, 40000, GATEWAY, 5683, b"payload")


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", "truncated"),
        (GOOD[:12], "truncated"),
        (GOOD[:-1], "truncated"),
        (b"\x60" + GOOD[1:], "not_ipv4"),
        (edited(GOOD, 0, b"\x44"), "bad_header_length"),
        (edited(GOOD, 0, b"\x4f"), "truncated"),
        (GOOD + b"\x00", "bad_length"),
        (edited(GOOD, 2, b"\x00\x10"), "bad_length"),
        (edited(GOOD, 6, b"\x20\x00"), "fragment"),
        (edited(GOOD, 6, b"\x00\x01"), "fragment"),
        (edited(GOOD, 6, b"\x80\x00"), "bad_flags"),
        (edited(GOOD, 9, b"\x06"), "tcp"),
        (edited(GOOD, 9, b"\x01"), "icmp"),
        (edited(GOOD, 9, b"\x2f"), "not_udp"),
        (edited(GOOD, 24, b"\x00\x10"), "bad_udp_length"),
        (GOOD[:-1] + bytes((GOOD[-1] ^ 1,)), "bad_udp_checksum"),
        (build_udp(DEVICE, 1, GATEWAY, 0, b"x"), "bad_port"),
        (build_udp("0.0.0.0", 1, GATEWAY, 2, b"x"), "bad_address"),
        (build_udp("224.0.0.1", 1, GATEWAY, 2, b"x"), "bad_address"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_malformed_packets_are_rejected_with_their_reason(packet: bytes, reason: str) -> None:
    assert reason_of(packet) == reason


def test_bad_header_checksum_is_rejected_and_named() -> None:
    packet = bytearray(GOOD)
    packet[10] ^= 0xFF
    with pytest.raises(PacketError, match=r"bad_ip_checksum: header checksum 0x[0-9a-f]{4} is wrong") as caught:
        parse_ipv4(bytes(packet))
    assert caught.value.reason == "bad_ip_checksum"


def test_a_changed_address_breaks_the_header_checksum() -> None:
    packet = bytearray(GOOD)
    packet[15] = 16  # 10.0.2.16 without fixing the checksum
    assert reason_of(bytes(packet)) == "bad_ip_checksum"


def test_error_messages_say_what_was_found() -> None:
    with pytest.raises(PacketError, match=r"20 bytes received, total length says 35"):
        parse_ipv4(GOOD[:20])
    with pytest.raises(PacketError, match=r"IP protocol 6, only UDP \(17\) is carried"):
        parse_udp(parse_ipv4(edited(GOOD, 9, b"\x06")))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": 0}, "ttl=0"),
        ({"identification": 70000}, "identification=70000"),
    ],
)
def test_build_refuses_bad_header_fields(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_udp(DEVICE, 1, GATEWAY, 2, b"", **kwargs)


def test_build_refuses_bad_ports_and_addresses() -> None:
    with pytest.raises(ValueError, match="dst_port=70000"):
        build_udp(DEVICE, 1, GATEWAY, 70000, b"")
    with pytest.raises(ValueError, match="10.0.2"):
        build_udp("10.0.2", 1, GATEWAY, 2, b"")
    with pytest.raises(ValueError, match="65535 bytes at most"):
        build_ipv4(DEVICE, GATEWAY, PROTO_UDP, bytes(65535))
