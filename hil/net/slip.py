"""SLIP framing (RFC 1055): IP packets as byte-stuffed frames on a serial line.

A frame ends with END (0xC0); END and ESC (0xDB) inside a frame are sent as
ESC ESC_END (0xDB 0xDC) and ESC ESC_ESC (0xDB 0xDD). The encoder also starts
every frame with END, as RFC 1055 suggests, so that line noise received
before it becomes an (ignored) frame of its own instead of spoiling the next
packet.
"""

from __future__ import annotations

from collections import Counter

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD

#: Largest frame the decoder keeps by default: an Ethernet-sized IP packet.
DEFAULT_MAX_FRAME = 1500


def slip_encode(packet: bytes) -> bytes:
    """One SLIP frame holding ``packet``, framed by END on both sides."""
    body = bytes(packet).replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


class SlipDecoder:
    """Incremental SLIP decoder: feed it bytes as they arrive, get whole frames back.

    Frames may be split across reads or arrive several in one read; empty
    frames (END END) are skipped. Until the first END is seen the decoder does
    not know where a frame starts, so those bytes are discarded as line noise
    (``synced=True`` skips that, for a stream known to start on a frame
    boundary). Broken frames are dropped and counted in :attr:`dropped` by
    reason: ``bad_escape`` (ESC followed by anything but ESC_END/ESC_ESC) and
    ``oversize`` (more than ``max_frame`` bytes without END; the decoder then
    skips to the next END, so it resynchronises by itself).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, synced: bool = False):
        if max_frame < 1:
            raise ValueError(f"max_frame={max_frame}: must be at least 1 byte")
        self.max_frame = max_frame
        self.dropped: Counter[str] = Counter()
        self.frames = 0  # frames returned so far
        self.noise_bytes = 0  # bytes discarded before the first END or inside dropped frames
        self._buffer = bytearray()
        self._synced = synced
        self._escaped = False
        self._broken: str | None = None  # reason the frame being received will be dropped

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data`` (possibly none), in order."""
        frames: list[bytes] = []
        data = bytes(data)
        start = 0
        if not self._synced:
            first_end = data.find(b"\xc0")
            if first_end < 0:
                self.noise_bytes += len(data)
                return frames
            self.noise_bytes += first_end
            self._synced = True
            start = first_end + 1
        while start < len(data):
            end = data.find(b"\xc0", start)
            chunk = data[start:] if end < 0 else data[start:end]
            self._take(chunk)
            if end < 0:
                break
            frame = self._finish()
            if frame is not None:
                frames.append(frame)
            start = end + 1
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held back, waiting for its END."""
        return len(self._buffer)

    def _take(self, chunk: bytes) -> None:
        if self._broken == "oversize":
            self.noise_bytes += len(chunk)
            return
        if self._escaped:
            chunk = b"\xdb" + chunk  # the ESC that ended the previous read
            self._escaped = False
        if chunk.endswith(b"\xdb"):
            chunk = chunk[:-1]  # its code comes with the next read
            self._escaped = True
        escapes = chunk.count(b"\xdb")
        # in a valid frame every ESC starts ESC_END or ESC_ESC, and the codes
        # cannot be ESC themselves, so counting and replacing is exact
        if escapes and escapes != chunk.count(b"\xdb\xdc") + chunk.count(b"\xdb\xdd"):
            self._broken = self._broken or "bad_escape"
        elif escapes:
            chunk = chunk.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
        if self._broken is None:
            self._buffer += chunk
        else:
            self.noise_bytes += len(self._buffer) + len(chunk)
            self._buffer.clear()
        if len(self._buffer) > self.max_frame:
            self._broken = "oversize"
            self.noise_bytes += len(self._buffer)
            self._buffer.clear()

    def _finish(self) -> bytes | None:
        broken = self._broken or ("bad_escape" if self._escaped else None)
        frame = bytes(self._buffer)
        self._buffer.clear()
        self._escaped = False
        self._broken = None
        if broken is not None:
            self.dropped[broken] += 1
            self.noise_bytes += len(frame)
            return None
        if not frame:
            return None
        self.frames += 1
        return frame
