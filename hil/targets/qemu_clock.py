"""QEMU's virtual time, stepped by the harness: ``-icount ...,sleep=off`` with ``stop``/``cont`` over QMP.

What QEMU 7.2 offers (measured on this machine): with ``-icount
shift=N,sleep=off`` device time counts instructions (2^N ns each) and, when
the CPU waits for an interrupt, jumps to the next timer deadline at once, so
idle time passes at ~50x wall speed; while the VM is stopped (QMP ``stop``,
a debugger) device time stands still. It offers nothing in between: sleep
cannot be switched on at run time, there is no "run for" a span of virtual
time, and nothing in QEMU can stop the VM when a packet leaves. So the
harness steps the machine itself (:class:`QemuClock`):

* skipping: ``cont``, read device time until it has moved
  :data:`SKIP_SLICE` (or skipping was switched off), ``stop``; then look
  whether a message left the device during the slice (while the VM is
  stopped, so nothing is missed): if one did, keep pace from now on and tell
  the governor. Device time can therefore run ahead of a message at most one
  slice, however slow the host.
* keeping pace: the same with :data:`PACE_SLICE`, then wait until the wall
  clock has caught up with device time since pacing began.

Device time comes from the board's FPGAIO counters (mps2 boards: 100 Hz
and 25 MHz counters on QEMU's virtual clock), read with QMP's ``xp``; boards
without known counters have no virtual time on QEMU. Messages that leave:
through the LAN9118, QEMU writes each frame the NIC sends to a pcap file
(``filter-dump``) stamped with the virtual clock, so their device time is
exact. Over SLIP on UART1 the harness sees bytes only, when it reads them,
and a busy host reads them late by up to seconds of device time (measured,
below): the QEMU target then runs in real time. A debugger: QEMU's
gdbstub shares ``stop``/``cont`` with the harness, and a Ctrl-C while the
harness holds the VM stopped would be lost; so with a debugger the QEMU
target does not step (real time) and leaves stop/cont to the debugger.

The stepping runs in a thread of its own with a blocking QMP connection
(:class:`hil.infra.qmp.QmpClient`): while the VM runs, device time races at
~50x, so every millisecond the harness is late to stop it costs 50 ms of
device time, and an event loop busy with the gateway or a deployment was
measured making a slice run 10 s of device time past its end. What is left
of that (the interpreter's 5 ms thread switch, a loaded host) is the limit
of QEMU's virtual time here: :attr:`QemuClock.overrun` records the worst.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..infra.qmp import QmpClient, QmpError
from .virtual_time import FileTail, MessageKey, TxLog, classify_packet

#: where a machine's FPGAIO block is (CLK100HZ at +0x14, COUNTER at +0x18, PRESCALE at +0x1C)
FPGAIO_BASE = {"mps2-an385": 0x40028000, "mps2-an386": 0x40028000, "mps2-an500": 0x40028000, "mps2-an511": 0x40028000}
COUNTER_HZ = 25_000_000  # FPGAIO's prescaler clock on these boards
#: 32 ns an instruction (31 MIPS): near the AN385's 25 MHz Cortex-M3, so busy code takes device time as on the board
ICOUNT = "shift=5,sleep=off"
#: device seconds run at most between two looks at what left the device, while skipping
SKIP_SLICE = 0.1
#: device seconds run between two looks at the wall clock, while keeping pace
PACE_SLICE = 0.02
#: device seconds the device may be ahead of the host's time while keeping pace
MAX_LEAD = 2 * PACE_SLICE
#: QEMU runs at a lower priority than the harness stepping it: on a host short of CPU the emulator, not
#: its controller, waits (a controller that is not scheduled lets device time race on)
QEMU_NICENESS = 10
_WORDS = re.compile(r"0x([0-9a-fA-F]+)")
_PCAP_HEADER = 24
_RECORD = struct.Struct("<IIII")

log = logging.getLogger("hil.targets.qemu_clock")


def fpgaio_seconds(clk100hz: int, counter: int, prescale: int) -> float:
    """Device seconds from the FPGAIO counters: the 100 Hz count, refined by the 25 MHz counter (which wraps
    every 172 s) when the firmware left its prescaler alone."""
    coarse = clk100hz / 100.0
    if prescale != 0:
        return coarse
    wrap = 2**32 / COUNTER_HZ
    fine = counter / COUNTER_HZ
    return fine + round((coarse - fine) / wrap) * wrap


class QemuClock:
    """The :class:`~hil.targets.virtual_time.EmulatorClock` of a QEMU target; see the module docs.

    It outlives QEMU processes (a guest reset restarts QEMU): :meth:`attach`
    each one, :meth:`detach` before it goes. What leaves the device is read
    from the pcap file QEMU writes while the VM is stopped.
    """

    def __init__(self, name: str, fpgaio: int):
        self.name = name
        self.fpgaio = fpgaio
        self.on_sent: Callable[[], None] | None = None
        self.txlog = TxLog()
        self.skipping = False
        self.driving = False  # stepping the machine (else a debugger owns stop and cont)
        self.device_now = 0.0  # device time as last read
        self.held: str | None = None  # the VM's state while someone else holds it stopped
        self.overrun = 0.0  # the most device time a slice ran past its end (the host was slow to stop it)
        self.error: BaseException | None = None
        self.started_wall: float | None = None  # time.time() when QEMU was started
        self._qmp: QmpClient | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pcap_lock = threading.Lock()  # the pcap, between the clock's thread and the event loop
        self._pcap: FileTail | None = None
        self._pcap_partial = b""
        self._pcap_origin: int | None = None  # pcap seconds = this + device seconds
        self._pcap_header_seen = False
        self._frames = 0  # frames read from the pcap so far that start an exchange
        self._frames_looked_at = 0  # ... when the driver last looked

    async def attach(self, qmp: QmpClient, *, pcap: Path | None = None, drive: bool = True,
                     started_wall: float | None = None) -> None:
        """Drive the QEMU behind ``qmp`` (started paused) from now on, keeping pace until told to skip.

        ``drive=False`` (a debugger owns stop and cont, or the node is not on the LAN9118): only read
        device time and stamp messages.
        """
        await self.detach()
        self.driving, self.started_wall = drive, started_wall
        self._qmp, self._pcap = qmp, FileTail(pcap) if pcap is not None else None
        self._pcap_partial, self._pcap_origin, self._pcap_header_seen = b"", None, False
        self._frames = self._frames_looked_at = 0
        self.device_now, self.held, self.error = 0.0, None, None
        self._loop = asyncio.get_running_loop()
        if drive:
            self._stop.clear()
            self._thread = threading.Thread(target=self._drive, name=f"{self.name} clock", daemon=True)
            self._thread.start()

    async def detach(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join, 10.0)
        qmp, self._qmp = self._qmp, None
        if qmp is not None:
            qmp.close()

    # -- EmulatorClock ----------------------------------------------------------------

    async def device_time(self) -> float:
        if self.error is not None:
            raise self.error
        return await asyncio.to_thread(self._read_time)

    def set_skipping(self, on: bool) -> bool:
        self.skipping = on and self.driving
        return self.skipping

    def message_time(self, key: MessageKey) -> float | None:
        # QEMU writes a frame to the pcap before it passes the frame on: what the gateway has is there.
        if self._pcap_origin is None and not self.driving and self._pcap is not None:
            self._calibrate_now()
        if self._pcap_origin is not None:
            self._read_pcap()
        return self.txlog.device_time(key)

    def _calibrate_now(self) -> None:
        """Without the stepping driver (a debugger's session) the origin comes from QEMU's start instead:
        its wall-clock second (the frames' device times may then be off by up to a second, all alike)."""
        if self.started_wall is not None:
            self._pcap_origin = math.floor(self.started_wall)

    # -- stepping (the clock's thread) ----------------------------------------------------

    def _read_time(self) -> float:
        if self._qmp is None:
            raise QmpError(f"{self.name}: the clock is not attached to a running QEMU")
        text = self._qmp.hmp(f"xp /3wx {self.fpgaio + 0x14:#x}")
        words = [int(w, 16) for w in _WORDS.findall(text.split(":", 1)[-1])]
        if len(words) != 3:
            raise QmpError(f"{self.name}: cannot read the FPGAIO counters: {text!r}")
        self.device_now = fpgaio_seconds(*words)
        return self.device_now

    def _drive(self) -> None:
        assert self._qmp is not None
        qmp = self._qmp
        pace: tuple[float, float] | None = None  # (device, wall) when keeping pace began
        try:
            now = self._read_time()
            while not self._stop.is_set():
                status = qmp.status()
                if status not in ("paused", "prelaunch"):
                    # Stopped by someone else (a debugger, an error), or not stopped by us: never resume it.
                    self.held, pace = status, None
                    self._stop.wait(0.05)
                    now = self._read_time()
                    continue
                self.held = None
                skipping = self.skipping
                end = now + (SKIP_SLICE if skipping else PACE_SLICE)
                qmp.execute("cont")
                while now < end and self.skipping == skipping:
                    now = self._read_time()
                qmp.execute("stop")
                now = self._read_time()
                self.overrun = max(self.overrun, now - end)
                if self._sent():
                    self.skipping = False
                    self._call_soon(self.on_sent)
                if self.skipping:
                    pace = None
                    continue
                wall = time.monotonic()
                if pace is None or (now - pace[0]) - (wall - pace[1]) > MAX_LEAD:
                    # A slice the host was slow to stop ran over: device time is ahead already, and a long
                    # stop to make up for it would only starve the exchange in flight. Keep pace from here.
                    pace = (now - MAX_LEAD, wall) if pace is not None else (now, wall)
                # Wait for the wall clock to catch up; a switch to skipping ends the wait early.
                while not self.skipping and (ahead := (now - pace[0]) - (time.monotonic() - pace[1])) > 0:
                    if self._stop.wait(min(ahead, 0.002)):
                        return
        except Exception as e:  # QEMU went away (a reset restarts it) or misbehaved
            self.error = e
            log.info("%s: clock stopped: %s", self.name, e)

    def _call_soon(self, callback: Callable[[], None] | None) -> None:
        if callback is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    def _sent(self) -> bool:
        """Whether anything that starts an exchange left the device since the last look (the VM is stopped)."""
        self._read_pcap()
        sent, self._frames_looked_at = self._frames != self._frames_looked_at, self._frames
        return sent

    def _read_pcap(self) -> int:
        """Take in the frames QEMU wrote since the last look; how many."""
        if self._pcap is None:
            return 0
        with self._pcap_lock:
            data = self._pcap_partial + self._pcap.read()
            offset = 0
            if not self._pcap_header_seen:
                if len(data) < _PCAP_HEADER:
                    self._pcap_partial = data
                    return 0
                offset, self._pcap_header_seen = _PCAP_HEADER, True
            frames = 0
            while offset + _RECORD.size <= len(data):
                seconds, micros, length, _ = _RECORD.unpack_from(data, offset)
                if offset + _RECORD.size + length > len(data):
                    break
                frame = data[offset + _RECORD.size : offset + _RECORD.size + length]
                offset += _RECORD.size + length
                frames += 1
                if self._stamp(seconds + micros / 1e6, frame):
                    self._frames += 1
            self._pcap_partial = data[offset:]
            return frames

    def _stamp(self, pcap_seconds: float, frame: bytes) -> bool:
        """Record a frame's device time; whether it starts an exchange (what is not IPv4 counts as one)."""
        if self._pcap_origin is None:
            # QEMU stamps frames with the wall clock's second at its start plus virtual time; the frame left
            # during the slice that just ended, so the origin is the one whole second that fits.
            self._pcap_origin = math.ceil(pcap_seconds - self.device_now - 1e-6)
        if frame[12:14] != b"\x08\x00" or len(frame) < 18:
            return True
        # A short frame is padded to Ethernet's 60 bytes: the packet is as long as its header says.
        packet = frame[14 : 14 + int.from_bytes(frame[16:18], "big")]
        key, starts = classify_packet(packet)
        if key is not None:
            self.txlog.record(key, pcap_seconds - self._pcap_origin)
        return starts
