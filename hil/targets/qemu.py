"""The QEMU target: an emulated board (default mps2-an385) running firmware.

QEMU starts with the console on a socket the harness is connected to before
the CPU runs, so the boot banner is in the log. The guest reaches the gateway
on the host's loopback through user networking at 10.0.2.2. With
``-no-reboot`` a guest reset ends QEMU; the target then powers the board up
again and repeats the bootstrap commands, as FITA's IoTNetEMU does after boot.

Options (``TargetConfig.options``): ``virtual_time`` (default true),
``qemu_icount`` (the ``-icount`` value, e.g. ``"shift=auto"``), ``qemu_extra_args``
(a list), ``net``: ``"eth"`` (default: LAN9118 on user networking), ``"slip"`` or ``"tap"``.

Device time is virtual (:mod:`hil.targets.qemu_clock`) on boards whose
clock the harness can read (the mps2 family), with the node on the LAN9118
(``net`` ``"eth"``; over SLIP QEMU runs in real time: the host sees a SLIP
frame's bytes only, too late to know its device time): QEMU runs with
``-icount shift=5,sleep=off``, starts paused and is stepped through QMP;
its idle time is skipped whenever the gateway has nothing in flight with
the node (:meth:`Target.govern_time`), and readings carry the device time
their message left at. With a debugger (``-gdb``/``-s`` in
``qemu_extra_args``, or ``gdb_port``) the debugger owns stop and cont: QEMU
runs in real time, unstepped, and device time (read, and stamped on
readings) stands still while the debugger holds the CPU. With
``virtual_time`` false QEMU runs in real time as before; so does a node on
a TAP device (fleets: their nodes share networks in real time).

With ``net="tap"`` the LAN9118 is on a TAP device the caller opened
(option ``tap_fd``, e.g. in a fleet's network namespace, see
:mod:`hil.infra.netns`), with the MAC of option ``mac``; the node is told
the gateway's address as it is, and option ``ipv4``
(``("10.10.12.1/24", "10.10.12.254")``) is its static address, set after
every boot (:meth:`~hil.targets.base.Target.configure_ipv4`).

With ``net="slip"`` the board has no Ethernet (``-nic none``); UART1 is a
second socket the harness connects to, and :class:`hil.targets.slip.SlipUplink`
relays the node's IP traffic to the gateway, as for Renode and serial boards.
After each boot the target runs ``net iface slip``; the node is told the
gateway is at 192.0.2.1 (the firmware's default peer, or ``gateway_host``),
which the bridge maps to the gateway's real address. The bridge's log is
``<endpoint>.slip.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ..infra.ports import free_port
from ..infra.qemu import QemuMachine
from ..infra.qmp import QmpClient
from .base import GDB_HOST, Target, TargetConfig, TargetError, register_target
from .qemu_clock import FPGAIO_BASE, ICOUNT, QEMU_NICENESS, QemuClock
from .slip import SlipUplink
from .virtual_time import TimeGovernor

#: where the guest sees the host under QEMU user networking
HOST_FROM_GUEST = "10.0.2.2"
NET_MODES = ("eth", "slip", "tap")
BOOT_TIMEOUT = 15.0

log = logging.getLogger("hil.targets.qemu")


@register_target
class QemuTarget(Target):
    name = "qemu"
    tools = (("qemu-system-arm", "qemu-system-arm"),)
    loads_firmware = True

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.firmware: Path | None = None  # known once started
        self.machine_name = (config.board.qemu_machine if config.board and config.board.qemu_machine else "mps2-an385")
        self.net = config.options.get("net") or "eth"
        if self.net not in NET_MODES:
            raise TargetError(f"net={self.net!r}: the QEMU target supports {' or '.join(NET_MODES)}")
        self.tap_fd: int | None = config.options.get("tap_fd")
        if self.net == "tap" and self.tap_fd is None:
            raise TargetError(f"{self.endpoint}: net 'tap' needs the TAP device's descriptor (option tap_fd)")
        self.qemu: QemuMachine | None = None
        self.uplink = SlipUplink(self.endpoint, config.log_dir, config.gateway_host) if self.net == "slip" else None
        extra = tuple(config.options.get("qemu_extra_args", ()))
        #: a debugger owns stop and cont (-gdb or -s): real time, device time only read
        self.debugger = config.gdb_port is not None or any(arg in ("-gdb", "-s") for arg in extra)
        self.qemu_clock: QemuClock | None = None
        #: QEMU is stepped in virtual time: only through the LAN9118, whose frames QEMU itself stamps
        #: (over SLIP the host sees bytes late by up to seconds of device time on a busy host: real time)
        self.stepped = False
        if config.options.get("virtual_time", True) and self.machine_name in FPGAIO_BASE:
            self.qemu_clock = QemuClock(self.endpoint, FPGAIO_BASE[self.machine_name])
            self.clock = self.qemu_clock
            self.stepped = not self.debugger and self.net == "eth"
            if self.stepped:
                self.governor = TimeGovernor(self.qemu_clock, self.endpoint)
        self._pump: asyncio.Task | None = None
        self._bootstrap: list[str] = []
        self._stopping = False
        self.restarts = 0
        self.reset_seen = asyncio.Event()
        self.restarted = asyncio.Event()  # set once a restart after a reset is over (bootstrap repeated)
        self._restart_error: str | None = None

    def device_server_uri(self, gateway_host: str, gateway_port: int) -> str:
        if self.uplink is None and self.net != "tap" and gateway_host in ("127.0.0.1", "localhost", "::1"):
            # A gateway on the host's loopback is at 10.0.2.2 for the guest.
            gateway_host = HOST_FROM_GUEST
        return super().device_server_uri(gateway_host, gateway_port)

    async def start(self) -> None:
        self.check_tools()
        self.firmware = await self.resolve_firmware()
        if self.firmware is None:
            board = self.config.board
            if board is not None:
                raise TargetError(f"{self.endpoint}: board file {board.source} names no firmware (field 'firmware'); pass --firmware")
            self.firmware = await self.reference_firmware()  # no board: mps2-an385, the reference firmware's machine
        extra = tuple(self.config.options.get("qemu_extra_args", ()))
        gdb_port = self.config.gdb_port
        if gdb_port is not None:
            # Halted at reset (-S) with the GDB server on loopback; the debugger owns stop and
            # cont, so device time is QEMU's own (read, not stepped: self.debugger).
            gdb_port = gdb_port or free_port()
            extra += ("-gdb", f"tcp:{GDB_HOST}:{gdb_port}", "-S")
        clocked, stepped = self.qemu_clock is not None, self.stepped
        self.qemu = QemuMachine(
            self.firmware,
            log_dir=self.config.log_dir,
            icount=self.config.options.get("qemu_icount") or (ICOUNT if stepped else None),
            extra_args=extra,
            machine=self.machine_name,
            name=f"{self.endpoint}.qemu",
            nic=self._nic(),
            slip=self.net == "slip",
            qmp=clocked,
            paused=stepped,  # the clock starts it
            niceness=QEMU_NICENESS if stepped else 0,
            pcap=self.config.log_dir / f"{self.endpoint}.tx.pcap" if clocked and self.net == "eth" else None,
            pass_fds=(self.tap_fd,) if self.tap_fd is not None else (),
        )
        await self._power_on(gdb_port)

    def _nic(self) -> str | None:
        if self.net == "slip":
            return None
        if self.net == "tap":
            mac = self.config.options.get("mac")
            return f"tap,fd={self.tap_fd},model=lan9118" + (f",mac={mac}" if mac else "")
        return "lan9118"

    async def _power_on(self, gdb_port: int | None = None) -> None:
        assert self.qemu is not None
        await self.qemu.start_async()
        self.console.writer = self.qemu.write_console
        self._pump = asyncio.create_task(self._pump_console(), name=f"{self.endpoint} console")
        if gdb_port is not None:
            self._gdb_ready(gdb_port, self.firmware)
        if self.qemu_clock is not None:
            qmp = await asyncio.to_thread(QmpClient.connect, self.qemu.host, self.qemu.qmp_port, name=f"{self.endpoint} QEMU")
            await self.qemu_clock.attach(qmp, pcap=self.qemu.pcap, drive=self.stepped, started_wall=self.qemu.started_wall)
        await self.console.expect_prompt(BOOT_TIMEOUT * (self.boot_wait_scale if gdb_port is not None else 1.0))
        if self.uplink is not None:
            self.uplink.attach(self.qemu.slip_link(f"{self.endpoint} UART1 ({self.qemu.host}:{self.qemu.slip_port})"))
            await self.uplink.bring_up_interface(self.shell)
            if self.uplink.gateway is not None:
                await self.uplink.start_bridge()
        await self.configure_ipv4()

    async def _stop_uplink(self) -> None:
        if self.uplink is not None:
            await self.uplink.close()

    async def _pump_console(self) -> None:
        await self.qemu.pump_console(self.console.feed)
        if self._stopping:
            return
        code = await self.qemu.wait_exit(5.0)
        if code != 0:
            self.console.feed(f"\n[embserve-hil] QEMU exited with code {code}; see {self.qemu.log_path}\n")
            return
        # -no-reboot: a guest reset ends QEMU. Power the board up again.
        self.restarted.clear()
        self.reset_seen.set()
        self.restarts += 1
        self.console.feed("\n[embserve-hil] guest reset: restarting QEMU\n")
        asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        self._restart_error = None
        try:
            await self._stop_uplink()
            if self.qemu_clock is not None:
                await self.qemu_clock.detach()
            await self.qemu.stop_async()
            await self._power_on()
            for command in self._bootstrap:
                await self.shell.exec(command)
        except Exception as e:  # reported on the console, where tests look
            self._restart_error = str(e)
            log.error("%s: restart after reset failed: %s", self.endpoint, e)
            self.console.feed(f"\n[embserve-hil] restart after reset failed: {e}\n")
        finally:
            self.restarted.set()

    async def bootstrap(self, server_uri: str, timeout: float = 10.0) -> None:
        if self.uplink is not None:  # told a URI directly: the gateway is on the host, same port
            await self.uplink.start_bridge(server_uri)
        self.record("bootstrap", server_uri=server_uri)
        command = f"embserve connector lwm2m server_add {server_uri} {self.endpoint}"
        self._bootstrap = [command]
        await self.shell.exec(command, timeout)

    async def reboot(self, timeout: float = 15.0) -> None:
        """Reset from the shell; returns once QEMU runs again and the bootstrap commands were repeated."""
        # Waiting for a prompt here would race the restart for it (and an old
        # "uart:~$ kernel reboot" line matches too): wait for the restart itself.
        self.reset_seen.clear()
        self.restarted.clear()
        self.record("reboot")
        await self.console.send_line("kernel reboot")
        for event, what in ((self.reset_seen, "no reset"), (self.restarted, "no restart")):
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                raise TargetError(f"{self.endpoint}: {what} within {timeout:g} s after 'kernel reboot'."
                                  f" Last console lines:\n{self.console.tail()}") from None
        if self._restart_error is not None:
            raise TargetError(f"{self.endpoint}: restart after 'kernel reboot' failed: {self._restart_error}")

    async def stop(self) -> None:
        self._stopping = True
        await self._stop_uplink()
        if self.qemu_clock is not None:
            await self.qemu_clock.detach()
        if self.qemu is not None:
            await self.qemu.stop_async()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
