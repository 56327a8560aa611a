"""Renode's virtual time, driven from inside Renode: skip idle time, keep pace, stamp what leaves.

Renode runs a machine's idle time as fast as it can with
``emulation SetGlobalAdvanceImmediately true``; without it, it holds virtual
time to the host's. The switch cannot be flipped back and forth: Renode
keeps pace by comparing total virtual time with total host time since the
start, so after skipping, turning it off freezes the machine until the host
has caught up (measured: a device that skipped 30 s stood still for 30 s).
And the monitor is slow for fine control (16 ms a query, 120 ms a
pause/start, 40 ms a ``RunFor``).

So the harness leaves advance-immediately on and keeps pace itself, inside
Renode: a small IronPython script (:data:`SCRIPT`, written next to the logs
and loaded with ``include``) hooks the master time source's sync points
(every quantum, :data:`QUANTUM`) and, while a flag file exists, sleeps
whenever device time has got ahead of the host's since the flag appeared.
The host creates and deletes that file (:meth:`RenodeClock.set_skipping`);
no monitor round trip is involved. The script also hooks the peripheral the
node's network leaves through (the SLIP UART's ``CharReceived``, or the
Ethernet MAC's ``FrameReady``): when a packet leaves the device it writes the
device time and the packet's CoAP message ID and token to a log and, if the
packet starts an exchange (a confirmable message, a request, anything not
CoAP; not a non-confirmable notification), creates the flag, in the CPU's own
thread, so device time keeps pace from the instant such a message is sent. This works for any firmware: nothing in it cooperates.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from .virtual_time import FileTail, TxLog

#: Renode's global quantum while the harness drives time: idle time then runs at ~50-70x on this
#: machine (100 us, Renode's default, gives ~3x); input reaches the machine at the next sync point
QUANTUM = "0.01"

log = logging.getLogger("hil.targets.renode_clock")

# IronPython 2.7, run by Renode; also valid Python 3 so nothing chokes on it.
SCRIPT = r'''
# embserve-hil's clock for one Renode machine; written by hil/targets/renode_clock.py.
import clr
from Antmicro import Renode
from System.IO import File, StreamWriter
from System.Threading import Thread
from System.Diagnostics import Stopwatch


def _hil_coap(p):
    """The CoAP message in an IPv4/UDP packet (a list of ints): ('mid token', starts an exchange);
    ('-', True) when it is not one."""
    if len(p) < 28 or (p[0] >> 4) != 4 or p[9] != 17:
        return "-", True
    u = p[(p[0] & 15) * 4 + 8:]
    if len(u) < 4 or (u[0] >> 6) != 1 or (u[0] & 15) > 8 or len(u) < 4 + (u[0] & 15):
        return "-", True
    token = "".join(["%02x" % b for b in u[4:4 + (u[0] & 15)]])
    kind, code = (u[0] >> 4) & 3, u[1]
    # Confirmable, or a request: something comes back. A non-confirmable notification expects nothing.
    starts = kind == 0 or (kind == 1 and (code >> 5) == 0 and code != 0)
    return "%d %s" % ((u[2] << 8) | u[3], token or "-"), starts


class _HilClock(object):
    def __init__(self, machine, flag, path):
        self.machine = machine
        self.flag = flag
        self.out = StreamWriter(path, True)
        self.out.AutoFlush = True
        self.watch = Stopwatch.StartNew()
        self.anchor = None
        self.frame = []
        self.escaped = False

    def on_sync(self, elapsed):
        # Keeping pace: never ahead of the host's time since the flag appeared.
        if not File.Exists(self.flag):
            self.anchor = None
            return
        virtual, host = elapsed.TotalSeconds, self.watch.Elapsed.TotalSeconds
        if self.anchor is None:
            self.anchor = (virtual, host)
        ahead = (virtual - self.anchor[0]) - (host - self.anchor[1])
        if ahead > 0.001:
            Thread.Sleep(int(ahead * 1000))

    def sent(self, packet):
        # The log first, then the flag: the host deletes the flag before it reads the log.
        key, starts = _hil_coap(packet)
        now = self.machine.ElapsedVirtualTime.TimeElapsed.TotalSeconds
        self.out.WriteLine("%.9f %d %s" % (now, 1 if starts else 0, key))
        if starts and not File.Exists(self.flag):
            File.WriteAllText(self.flag, "")

    def on_slip_char(self, b):
        b = int(b)
        if b == 0xC0:
            if self.frame:
                self.sent(self.frame)
            self.frame = []
            self.escaped = False
        elif b == 0xDB:
            self.escaped = True
        else:
            if self.escaped:
                b = {0xDC: 0xC0, 0xDD: 0xDB}.get(b, b)
                self.escaped = False
            self.frame.append(b)

    def on_ethernet_frame(self, frame):
        data = [int(b) for b in frame.Bytes]
        if len(data) > 14 and data[12] == 0x08 and data[13] == 0x00:
            self.sent(data[14:])


def mc_hil_clock(peripheral, kind, flag, path):
    machine = self.Machine
    clock = _HilClock(machine, flag, path)
    if kind == "slip":
        clr.Convert(machine[peripheral], Renode.Peripherals.UART.IUART).CharReceived += clock.on_slip_char
    else:
        clr.Convert(machine[peripheral], Renode.Peripherals.Network.IMACInterface).FrameReady += clock.on_ethernet_frame
    emulationManager.CurrentEmulation.MasterTimeSource.SyncHook += clock.on_sync
    print("embserve-hil clock on %s (%s)" % (peripheral, kind))
'''


class RenodeClock:
    """The :class:`~hil.targets.virtual_time.EmulatorClock` of one Renode machine; see the module docs.

    ``command`` runs a monitor command on that machine's Renode;
    ``peripheral`` is where the node's packets leave (``kind`` ``"slip"``:
    a UART carrying SLIP; ``"eth"``: an Ethernet MAC).
    """

    def __init__(self, command: Callable[[str], Awaitable[str]], directory: Path, name: str, peripheral: str, kind: str):
        self._command = command
        self.peripheral = peripheral
        self.kind = kind
        self.script = directory / f"{name}.clock.py"
        self.flag = directory / f"{name}.keep-pace"
        self.log_path = directory / f"{name}.tx.log"
        self.txlog = TxLog()
        self.on_sent: Callable[[], None] | None = None
        self._log = FileTail(self.log_path)
        self._partial = b""

    async def attach(self) -> None:
        """Load the script, hook the machine, and keep pace from now on (until told to skip)."""
        self.flag.write_text("")
        self.log_path.write_text("")
        self.script.write_text(SCRIPT)
        await self._command(f"include @{self.script}")
        await self._command(f'hil_clock "{self.peripheral}" "{self.kind}" "{self.flag}" "{self.log_path}"')
        await self._command(f'emulation SetGlobalQuantum "{QUANTUM}"')
        await self._command("emulation SetGlobalAdvanceImmediately true")

    async def device_time(self) -> float:
        text = await self._command('python "print(self.Machine.ElapsedVirtualTime.TimeElapsed.TotalSeconds)"')
        return float(text.strip().splitlines()[-1])

    def set_skipping(self, on: bool) -> bool:
        if not on:
            if not self.flag.exists():
                self.flag.write_text("")
            return False
        with contextlib.suppress(FileNotFoundError):
            self.flag.unlink()
        if self.read_log():  # something left the device meanwhile: its hook may have found the flag still there
            self.flag.write_text("")
            if self.on_sent is not None:
                self.on_sent()
            return False
        return True

    def read_log(self) -> int:
        """Take in the log's new lines (the device time of each packet that left); how many of those
        packets start an exchange."""
        lines = (self._partial + self._log.read()).split(b"\n")
        self._partial = lines.pop()
        starting = 0
        for line in lines:
            fields = line.decode(errors="replace").split()  # device seconds, starts an exchange, [mid token]
            if len(fields) < 2:
                continue
            starting += fields[1] == "1"
            if len(fields) == 4:
                token = bytes.fromhex(fields[3]) if fields[3] != "-" else b""
                self.txlog.record((int(fields[2]), token), float(fields[0]))
        return starting

    def message_time(self, key: tuple[int, bytes]) -> float | None:
        self.read_log()
        return self.txlog.device_time(key)

    def poll(self) -> None:
        """Called often by the target: new messages from the device reach the governor."""
        if self.read_log() and self.on_sent is not None:
            self.on_sent()
