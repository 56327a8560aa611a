"""The QEMU target: an emulated board (default mps2-an385) running firmware.

QEMU starts with the console on a socket the harness is connected to before
the CPU runs, so the boot banner is in the log. The guest reaches the gateway
on the host's loopback through user networking at 10.0.2.2. With
``-no-reboot`` a guest reset ends QEMU; the target then powers the board up
again and repeats the bootstrap commands, as FITA's IoTNetEMU does after boot.

Options (``TargetConfig.options``): ``qemu_icount`` (e.g. ``"shift=auto"``
for deterministic time), ``qemu_extra_args`` (a list), ``net``: ``"eth"``
(default: LAN9118 on user networking) or ``"slip"``.

With ``net="slip"`` the board has no Ethernet (``-nic none``); UART1 is a
second socket the harness connects to, and :class:`hil.net.SlipBridge` relays
the node's IP traffic to the gateway. After each boot the target runs
``net iface slip``; the node is told the gateway is at 192.0.2.1 (the
firmware's default peer, or ``gateway_host``), which the bridge maps to the
gateway's real address. The bridge's log is ``<endpoint>.slip.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from urllib.parse import urlsplit

from .base import Target, TargetConfig, TargetError, register_target

#: where the guest sees the host under QEMU user networking
HOST_FROM_GUEST = "10.0.2.2"
#: the SLIP peer in the firmware's default addressing (device 192.0.2.2/24)
SLIP_PEER = "192.0.2.1"
NET_MODES = ("eth", "slip")
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
        self.qemu = None
        self.bridge = None  # the SlipBridge of the current boot (net="slip")
        self._gateway: tuple[str, int] | None = None  # where the bridge relays to
        self._bridge_log: logging.Logger | None = None
        self._pump: asyncio.Task | None = None
        self._bootstrap: list[str] = []
        self._stopping = False
        self.restarts = 0
        self.reset_seen = asyncio.Event()
        self.restarted = asyncio.Event()  # set once a restart after a reset is over (bootstrap repeated)
        self._restart_error: str | None = None

    def device_server_uri(self, gateway_host: str, gateway_port: int) -> str:
        if self.net == "slip":
            # The bridge relays what the node sends to its peer address here.
            self._gateway = (gateway_host, gateway_port)
            return f"coap://{self._slip_peer}:{gateway_port}"
        # A gateway on the host's loopback is at 10.0.2.2 for the guest.
        host = self.config.gateway_host or (HOST_FROM_GUEST if gateway_host in ("127.0.0.1", "localhost", "::1") else gateway_host)
        return f"coap://{host}:{gateway_port}"

    @property
    def _slip_peer(self) -> str:
        return self.config.gateway_host or SLIP_PEER

    async def start(self) -> None:
        from ..infra.qemu import QemuMachine

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
            nic=None if self.net == "slip" else "lan9118",
            slip=self.net == "slip",
        )
        await self._power_on()

    async def _power_on(self) -> None:
        await self.qemu.start_async()
        writer = self.qemu.writer

        async def write(data: bytes) -> None:
            # The guest UART holds one byte; QEMU's chardev buffers the rest.
            writer.write(data)
            await writer.drain()

        self.console.writer = write
        self._pump = asyncio.create_task(self._pump_console(), name=f"{self.endpoint} console")
        await self.console.expect_prompt(BOOT_TIMEOUT)
        if self.net == "slip":
            out = await self.shell.exec("net iface slip")
            if not any("is up" in line for line in out):
                raise TargetError(f"{self.endpoint}: 'net iface slip' failed: {out}")
            if self._gateway is not None:
                await self._start_bridge()

    async def _start_bridge(self) -> None:
        from ..net import SlipBridge, StreamLink

        await self._stop_bridge()
        if self._bridge_log is None:
            self._bridge_log = logging.getLogger(f"hil.targets.qemu.{self.endpoint}.slip")
            self._bridge_log.setLevel(logging.DEBUG)
            self._bridge_log.propagate = False
            handler = logging.FileHandler(self.config.log_dir / f"{self.endpoint}.slip.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self._bridge_log.addHandler(handler)
        link = StreamLink(self.qemu.slip_reader, self.qemu.slip_writer, name=f"{self.endpoint} UART1 ({self.qemu.host}:{self.qemu.slip_port})")
        self.bridge = SlipBridge(link, gateway=self._gateway, device_gateway_ip=self._slip_peer, log=self._bridge_log)
        await self.bridge.start()

    async def _stop_bridge(self) -> None:
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            await bridge.close()

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
            await self._stop_bridge()
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
        if self.net == "slip" and self.bridge is None:
            if self._gateway is None:  # told a URI directly: the gateway is on the host, same port
                self._gateway = ("127.0.0.1", urlsplit(server_uri).port or 5683)
            await self._start_bridge()
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
        await self._stop_bridge()
        if self._bridge_log is not None:
            for handler in list(self._bridge_log.handlers):
                self._bridge_log.removeHandler(handler)
                handler.close()
            self._bridge_log = None
        if self.qemu is not None:
            await self.qemu.stop_async()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
