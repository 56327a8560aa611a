"""SLIP framing (RFC 1055): encoding, incremental decoding, resynchronisation."""

from __future__ import annotations

import random

import pytest

from hil.net.slip import END, ESC, ESC_END, ESC_ESC, SlipDecoder, slip_encode


def test_constants_are_the_rfc_1055_values() -> None:
    assert (END, ESC, ESC_END, ESC_ESC) == (0xC0, 0xDB, 0xDC, 0xDD)


def test_encode_frames_plain_bytes_between_two_ends() -> None:
    assert slip_encode(b"abc") == b"\xc0abc\xc0"


def test_encode_escapes_end_and_esc() -> None:
    assert slip_encode(b"\xc0") == b"\xc0\xdb\xdc\xc0"
    assert slip_encode(b"\xdb") == b"\xc0\xdb\xdd\xc0"
    # ESC must be escaped before END, or the ESC of ESC_END would be doubled
    assert slip_encode(b"a\xdb\xc0b\xc0\xdb") == b"\xc0a\xdb\xdd\xdb\xdcb\xdb\xdc\xdb\xdd\xc0"
    assert slip_encode(b"\xdc\xdd") == b"\xc0\xdc\xdd\xc0"  # the escape codes alone are plain data


def test_decode_undoes_encode_for_every_byte_value() -> None:
    payload = bytes(range(256)) * 2
    decoder = SlipDecoder(max_frame=1024)
    assert decoder.feed(slip_encode(payload)) == [payload]
    assert decoder.frames == 1
    assert not decoder.dropped


def test_random_packets_round_trip() -> None:
    rng = random.Random(1055)
    packets = [bytes(rng.choice((0xC0, 0xDB, 0xDC, 0xDD, rng.randrange(256))) for _ in range(rng.randrange(1, 600))) for _ in range(200)]
    decoder = SlipDecoder(max_frame=600)
    stream = b"".join(slip_encode(p) for p in packets)
    assert decoder.feed(stream) == packets


def test_back_to_back_frames_in_one_read() -> None:
    decoder = SlipDecoder()
    # shared END between frames, as a sender that only ends frames would produce
    assert decoder.feed(b"\xc0one\xc0two\xc0\xc0three\xc0") == [b"one", b"two", b"three"]


def test_frame_split_across_reads_byte_by_byte() -> None:
    frames = [b"first \xc0 frame", b"\xdb\xdb\xc0", b"third"]
    stream = b"".join(slip_encode(f) for f in frames)
    decoder = SlipDecoder()
    seen: list[bytes] = []
    for byte in stream:
        seen += decoder.feed(bytes((byte,)))
    assert seen == frames
    assert not decoder.dropped


def test_escape_split_between_reads() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0ab\xdb") == []
    assert decoder.pending == 2
    assert decoder.feed(b"\xdccd\xc0") == [b"ab\xc0cd"]


def test_empty_frames_are_ignored() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0\xc0\xc0\xc0x\xc0\xc0") == [b"x"]
    assert decoder.frames == 1
    assert not decoder.dropped


def test_bytes_before_the_first_end_are_discarded_as_noise() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"boot banner\r\n") == []
    assert decoder.feed(b"more noise\xc0packet\xc0") == [b"packet"]
    assert decoder.noise_bytes == len(b"boot banner\r\nmore noise")
    assert not decoder.dropped  # noise is not a frame


def test_a_synced_decoder_keeps_a_first_frame_without_leading_end() -> None:
    decoder = SlipDecoder(synced=True)
    assert decoder.feed(b"packet\xc0") == [b"packet"]


def test_bad_escape_drops_only_that_frame() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0good\xc0bad\xdbXframe\xc0next\xc0") == [b"good", b"next"]
    assert decoder.dropped == {"bad_escape": 1}


def test_esc_followed_by_end_is_a_bad_escape() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0cut\xdb\xc0after\xc0") == [b"after"]
    assert decoder.dropped == {"bad_escape": 1}


def test_double_esc_is_a_bad_escape() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0a\xdb\xdb\xdcb\xc0ok\xc0") == [b"ok"]
    assert decoder.dropped == {"bad_escape": 1}


def test_oversize_frame_without_end_is_discarded_and_the_decoder_resyncs() -> None:
    decoder = SlipDecoder(max_frame=16)
    assert decoder.feed(b"\xc0" + b"x" * 10) == []
    assert decoder.feed(b"y" * 10) == []  # now 20 bytes: past the limit, nothing kept
    assert decoder.pending == 0
    assert decoder.feed(b"z" * 1000) == []  # still discarding, no memory growth
    assert decoder.pending == 0
    assert decoder.feed(b"tail\xc0fits\xc0") == [b"fits"]
    assert decoder.dropped == {"oversize": 1}
    assert decoder.noise_bytes == 1024


def test_frame_of_exactly_max_frame_bytes_is_kept() -> None:
    decoder = SlipDecoder(max_frame=8)
    assert decoder.feed(slip_encode(b"\xc0" * 8)) == [b"\xc0" * 8]  # the limit counts decoded bytes
    assert decoder.feed(slip_encode(b"a" * 9)) == []
    assert decoder.dropped == {"oversize": 1}


def test_garbage_then_resync_keeps_later_frames() -> None:
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(5000))
    decoder = SlipDecoder(max_frame=64)
    decoder.feed(garbage)
    # the END that starts the next frame closes whatever the garbage left open
    # (the IP layer rejects that remnant); the frame itself comes out whole
    frames = decoder.feed(slip_encode(b"hello"))
    assert frames[-1] == b"hello"
    assert len(frames) <= 2


def test_max_frame_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_frame=0"):
        SlipDecoder(max_frame=0)


def test_escaped_esc_followed_by_an_escape_code_byte() -> None:
    # ESC ESC_ESC then a literal 0xDC: the data is DB DC, not an ESC_END
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0\xdb\xdd\xdc\xc0") == [b"\xdb\xdc"]


def test_double_esc_split_between_reads_is_a_bad_escape() -> None:
    decoder = SlipDecoder()
    assert decoder.feed(b"\xc0a\xdb") == []
    assert decoder.feed(b"\xdb\xdcb\xc0ok\xc0") == [b"ok"]
    assert decoder.dropped == {"bad_escape": 1}
