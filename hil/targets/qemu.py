"""The QEMU target: an emulated board (default mps2-an385) running firmware.

QEMU starts with the console on a socket the harness is connected to before
the CPU runs, so the boot banner is in the log. The guest reaches the gateway
on the host's loopback through user networking at 10.0.2.2. With
``-no-reboot`` a guest reset ends QEMU; the target then powers the board up
again and repeats the bootstrap commands, as FITA's IoTNetEMU does after boot.

Options (``TargetConfig.options``): ``qemu_icount`` (e.g. ``"shift=auto"``
for deterministic time), ``qemu_extra_args`` (a list), ``net``: ``"eth"``
(default: LAN9118 on user networking), ``"slip"`` or ``"tap"``.

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

from ..infra.qemu import QemuMachine
from .base import Target, TargetConfig, TargetError, register_target
from .slip import SlipUplink

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
        self.qemu = QemuMachine(
            self.firmware,
            log_dir=self.config.log_dir,
            icount=self.config.options.get("qemu_icount"),
            extra_args=tuple(self.config.options.get("qemu_extra_args", ())),
            machine=self.machine_name,
            name=f"{self.endpoint}.qemu",
            nic=self._nic(),
            slip=self.net == "slip",
            pass_fds=(self.tap_fd,) if self.tap_fd is not None else (),
        )
        await self._power_on()

    def _nic(self) -> str | None:
        if self.net == "slip":
            return None
        if self.net == "tap":
            mac = self.config.options.get("mac")
            return f"tap,fd={self.tap_fd},model=lan9118" + (f",mac={mac}" if mac else "")
        return "lan9118"

    async def _power_on(self) -> None:
        assert self.qemu is not None
        await self.qemu.start_async()
        self.console.writer = self.qemu.write_console
        self._pump = asyncio.create_task(self._pump_console(), name=f"{self.endpoint} console")
        await self.console.expect_prompt(BOOT_TIMEOUT)
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
        command = f"embserve connector lwm2m server_add {server_uri} {self.endpoint}"
        self._bootstrap = [command]
        await self.shell.exec(command, timeout)

    async def reboot(self, timeout: float = 15.0) -> None:
        """Reset from the shell; returns once QEMU runs again and the bootstrap commands were repeated."""
        # Waiting for a prompt here would race the restart for it (and an old
        # "uart:~$ kernel reboot" line matches too): wait for the restart itself.
        self.reset_seen.clear()
        self.restarted.clear()
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
        if self.qemu is not None:
            await self.qemu.stop_async()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
