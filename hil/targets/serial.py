"""The serial target: a real board (or anything that looks like one) on a serial port.

The port is opened with pyserial's ``serial_for_url``, so it can be a device
path (``/dev/ttyACM0``), ``rfc2217://host:port`` (ser2net, a labgrid
exporter) or ``socket://host:port`` (a raw TCP bridge). Bring-up order:

1. open the port (exclusively) and start the background reader, so nothing
   the board prints from here on is lost;
2. flash, when a flash command is configured and a firmware is given;
3. reset: pulse DTR or RTS, or run the configured reset command; without a
   reset, send a newline so a board that is already running shows its prompt;
4. boot is detected by the shell prompt; garbage instead of text means the
   wrong baud rate, and silence ends in an error that shows the last console
   lines and the log path.

A board with a network of its own reaches the gateway over it, so the
address it is told (``--gateway-host``) is separate from where the gateway
listens. A board without one joins through this host: a second serial port
(``--net-serial-port``, ``TargetConfig.net_serial_port``; the same URL forms)
is wired to the UART its firmware runs SLIP on. The target opens it with the
console, runs ``net iface slip`` on the board after boot, tells the board the
gateway is at 192.0.2.1 (the SLIP peer; ``--gateway-host`` overrides it) and
relays the board's IP traffic to the gateway with :class:`hil.net.SlipBridge`
(see :mod:`hil.targets.slip`), so the gateway can listen on loopback. After
:meth:`SerialTarget.reboot` it brings ``sl0`` up again and repeats the
bootstrap.

Board-file fields used: ``baudrate``, ``prompt``, ``reset``,
``reset_command``, ``reset_pulse``, ``flash``, ``flash_timeout``,
``boot_timeout``. Each can be overridden through ``TargetConfig.options``
under the same name (and ``port`` for the serial port, ``net_port`` and
``net_baudrate`` for the SLIP port; the SLIP line runs at the console's baud
rate unless told otherwise).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import re
import threading
import time
from pathlib import Path
from typing import Any

import serial
import serial.tools.list_ports

from ..net import SerialLink
from .base import Target, TargetConfig, TargetError, register_target
from .host_commands import run_host_command
from .slip import SlipUplink

READ_TIMEOUT = 0.05  # the reader thread notices a stop request within this
POKE_INTERVAL = 1.0  # seconds between newlines sent to a board that was not reset
RESET_COMMAND_TIMEOUT = 30.0
DEFAULTS: dict[str, Any] = {
    "baudrate": 115200,
    "prompt": "uart:~$ ",
    "reset": "none",
    "reset_command": None,
    "reset_pulse": 0.1,
    "flash": None,
    "flash_timeout": 120.0,
    "boot_timeout": 10.0,
}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: control characters a text console legitimately sends
_TEXT_CONTROLS = set("\t\n\r\x1b\x07\x08")


class BootWatch:
    """Watches the bytes since the last reset: has the prompt appeared, is it text at all?

    Kept apart from the console's line buffer so a prompt printed before a
    reset can never be taken for the one after it.
    """

    #: garbled when at least this many characters arrived ...
    MIN_SAMPLE = 24
    #: ... and more than this share of them are not text
    MAX_BAD_RATIO = 0.25

    def __init__(self, prompt: str):
        self._prompt = re.compile(re.escape(prompt.rstrip()) + r"[ \t]*(?:\r?\n|\r|$)")
        self.restart()

    def restart(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._window = ""
        self.received = 0  # characters since restart()
        self.bad = 0  # of which not text: replacement characters, stray control codes
        self.prompt_seen = False

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        self.received += len(text)
        self.bad += sum(1 for c in text if c == "\ufffd" or (c < " " and c not in _TEXT_CONTROLS) or c == "\x7f")
        if not self.prompt_seen:
            self._window = (self._window + _ANSI.sub("", text))[-4096:]
            self.prompt_seen = self._prompt.search(self._window) is not None

    @property
    def garbled(self) -> bool:
        return self.received >= self.MIN_SAMPLE and self.bad > self.MAX_BAD_RATIO * self.received


def available_ports() -> list[str]:
    return sorted(p.device for p in serial.tools.list_ports.comports())


def _explain_open_error(url: str, error: Exception) -> str:
    text = str(error)
    errno = getattr(error, "errno", None)
    if "exclusively lock" in text or errno == 11:
        return (f"serial port {url} is busy: another program has it open (a terminal such as"
                f" minicom, screen or picocom, another test run, or ModemManager); close it and retry")
    if errno == 2 or "No such file" in text:
        ports = ", ".join(available_ports()) or "none"
        return f"serial port {url} does not exist (is the board plugged in?); serial ports on this machine: {ports}"
    if errno == 13 or "Permission denied" in text:
        return f"no permission to open serial port {url}: add your user to the 'dialout' group (or the port's group)"
    if "refused" in text.lower():
        return (f"cannot reach {url}: connection refused (is ser2net or the labgrid exporter running,"
                f" and is the place acquired?)")
    return f"cannot open serial port {url}: {text}"


@register_target
class SerialTarget(Target):
    """A board on a serial port; see the module docs."""

    name = "serial"
    # Whatever the bench flashed: no `sensor set` or `embserve service input` unless the board file says so.
    reference_shell = False

    def __init__(self, config: TargetConfig):
        super().__init__(config)
        self.settings = self._settings(config)
        self.url: str | None = config.serial_port or config.options.get("port")
        self.port: serial.SerialBase | None = None
        self.net_url: str | None = config.net_serial_port or config.options.get("net_port")
        self.net_baudrate = config.options.get("net_baudrate", self.settings["baudrate"])
        if not isinstance(self.net_baudrate, int) or isinstance(self.net_baudrate, bool) or self.net_baudrate <= 0:
            raise TargetError(f"net_baudrate {self.net_baudrate!r}: expected a positive whole number of baud")
        self.uplink = SlipUplink(self.endpoint, config.log_dir, config.gateway_host) if self.net_url else None
        self._bootstrap: list[str] = []  # repeated after a reboot when the board's network is SLIP
        self.shell.prompt = self.settings["prompt"]
        self.boot = BootWatch(self.settings["prompt"])
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed: str | None = None  # why the reader stopped, if the port went away
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_lock = asyncio.Lock()

    @staticmethod
    def _settings(config: TargetConfig) -> dict[str, Any]:
        board = config.board
        settings = {key: (getattr(board, key) if board else default) for key, default in DEFAULTS.items()}
        settings.update({k: v for k, v in config.options.items() if k in DEFAULTS})
        if settings["reset_command"] and "reset" not in config.options and settings["reset"] == "none":
            settings["reset"] = "command"
        if settings["reset"] not in ("none", "dtr", "rts", "command"):
            raise TargetError(f"reset {settings['reset']!r}: expected none, dtr, rts or command")
        if settings["reset"] == "command" and not settings["reset_command"]:
            raise TargetError("reset 'command' needs a reset_command (board file or options)")
        return settings

    # -- bring-up -------------------------------------------------------------

    async def start(self) -> None:
        if not self.url:
            ports = ", ".join(available_ports()) or "none found"
            raise TargetError(
                f"{self.endpoint}: the serial target needs --serial-port (a device path such as /dev/ttyACM0,"
                f" rfc2217://host:port or socket://host:port); serial ports on this machine: {ports}"
            )
        if self.net_url is not None and self.net_url == self.url:
            raise TargetError(f"{self.endpoint}: --net-serial-port {self.net_url} is the console's port; the SLIP"
                              f" line needs the board's second UART on a port of its own")
        self._loop = asyncio.get_running_loop()
        self.port = await asyncio.to_thread(self._open)
        self.console.writer = self._write
        if self.uplink is not None:
            # Opened before the reset too: a missing port fails fast, and the
            # line's boot-time bytes wait in the OS buffer until the bridge skips them.
            self.uplink.attach(await asyncio.to_thread(self._open_net))
        self._stopping.clear()
        self._reader = threading.Thread(target=self._read_loop, name=f"serial-reader {self.url}", daemon=True)
        self._reader.start()

        self.boot.restart()
        flashed = await self._flash()
        how = await self._reset()
        if how is None:
            how = "flashing" if flashed else "attaching (no reset configured: a newline was sent every second)"
        await self._wait_for_boot(self.settings["boot_timeout"], poke=how.startswith("attaching"), how=how)
        self.console.drain()
        if self.uplink is not None:
            await self.uplink.bring_up_interface(self.shell)

    async def _reset(self) -> str | None:
        """Reset the board as configured; how it was done, or None when nothing resets it."""
        reset = self.settings["reset"]
        if reset in ("dtr", "rts"):
            self.boot.restart()
            await asyncio.to_thread(self._pulse, reset, self.settings["reset_pulse"])
            return f"a {reset.upper()} pulse"
        if reset == "command":
            self.boot.restart()
            await self._run_command("reset", self.settings["reset_command"], RESET_COMMAND_TIMEOUT)
            return "the reset command"
        return None

    def _open(self) -> serial.SerialBase:
        url = self.url
        assert url is not None
        try:
            # A write never blocks for long on a device node; rfc2217:// has no write timeout at all.
            extra = {} if "://" in url else {"write_timeout": 10.0}
            port = serial.serial_for_url(
                url, baudrate=self.settings["baudrate"], timeout=READ_TIMEOUT, exclusive=True, do_not_open=True, **extra,
            )
            # Opening asserts DTR and RTS; a board reset by one of them would be held in reset.
            if self.settings["reset"] in ("dtr", "rts"):
                setattr(port, self.settings["reset"], False)
            port.open()
        except (serial.SerialException, OSError, ValueError) as e:
            raise TargetError(f"{self.endpoint}: {_explain_open_error(url, e)}") from e
        return port

    def _open_net(self) -> SerialLink:
        """The SLIP port: raw bytes at ``net_baudrate``, modem lines left alone."""
        url = self.net_url
        assert url is not None
        try:
            extra = {} if "://" in url else {"write_timeout": 10.0}
            port = serial.serial_for_url(url, baudrate=self.net_baudrate, timeout=SerialLink.POLL, exclusive=True, **extra)
        except (serial.SerialException, OSError, ValueError) as e:
            raise TargetError(f"{self.endpoint}: SLIP line (--net-serial-port): {_explain_open_error(url, e)}") from e
        return SerialLink(port, name=f"{self.endpoint} SLIP line {url}")

    async def _flash(self) -> bool:
        command = self.settings["flash"]
        firmware = self.config.firmware or self.config.options.get("firmware")
        if not command or not firmware:
            return False
        firmware = Path(firmware).resolve()
        if not firmware.is_file():
            raise TargetError(f"{self.endpoint}: firmware {firmware} does not exist; nothing to flash")
        await self._run_command("flash", command, self.settings["flash_timeout"], firmware=firmware)
        self.firmware = firmware
        return True

    def _pulse(self, line: str, seconds: float) -> None:
        assert self.port is not None
        try:
            setattr(self.port, line, True)
            time.sleep(seconds)
            setattr(self.port, line, False)
        except (OSError, serial.SerialException) as e:
            raise TargetError(
                f"{self.endpoint}: cannot reset by {line.upper()} on {self.url}: the port has no modem control"
                f" lines ({e}); a pseudo-terminal or raw socket has none: set reset = \"command\" with a"
                f" reset_command in the board file instead"
            ) from e

    async def _run_command(self, kind: str, template: str, timeout: float, **values: Any) -> None:
        """Run a board's reset or flash command; its output goes to <endpoint>.<kind>.log."""
        board = self.config.board.name if self.config.board else ""
        await run_host_command(self.endpoint, kind, template, {"port": self.url or "", "board": board, **values},
                               log_dir=self.config.log_dir, timeout=timeout)

    async def _wait_for_boot(self, timeout: float, *, poke: bool, how: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_poke = loop.time()
        while not self.boot.prompt_seen:
            if self.boot.garbled:
                raise TargetError(
                    f"{self.endpoint}: console output looks like the wrong baud rate ({self.settings['baudrate']}?):"
                    f" {self.boot.bad} of {self.boot.received} characters from {self.url} are not text;"
                    f" check the board's baud rate (board file field 'baudrate')"
                    f"\nLast console lines:\n{self.console.tail()}\n(console log: {self.console.log_path})"
                )
            if self._closed:
                raise TargetError(f"{self.endpoint}: {self._closed}\nLast console lines:\n{self.console.tail()}"
                                  f"\n(console log: {self.console.log_path})")
            now = loop.time()
            if now >= deadline:
                heard = (f"{self.boot.received} characters but no prompt {self.settings['prompt']!r}"
                         if self.boot.received else "nothing at all")
                raise TargetError(
                    f"{self.endpoint}: board on {self.url} printed {heard} within {timeout:g} s after {how}."
                    f" Check the cable and port, the baud rate ({self.settings['baudrate']}), that the firmware"
                    f" runs, and the board's prompt.\nLast console lines:\n{self.console.tail()}"
                    f"\n(console log: {self.console.log_path})"
                )
            if poke and now >= next_poke:
                await self.console.write(b"\n")
                next_poke = now + POKE_INTERVAL
            await asyncio.sleep(0.02)

    # -- the port -------------------------------------------------------------

    def _read_loop(self) -> None:
        port, loop = self.port, self._loop
        assert port is not None and loop is not None
        while not self._stopping.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as e:
                if not self._stopping.is_set():
                    reason = f"serial port {self.url} went away: {e}"
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self._on_closed, reason)
                return
            if data:
                with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
                    loop.call_soon_threadsafe(self._on_bytes, data)

    def _on_bytes(self, data: bytes) -> None:
        self.boot.feed(data)
        self.console.feed(data)

    def _on_closed(self, reason: str) -> None:
        self._closed = reason
        self.console.feed(f"\n[embserve-hil: {reason}]\n")

    async def _write(self, data: bytes) -> None:
        if self._closed:
            raise TargetError(f"{self.endpoint}: {self._closed}")
        port = self.port
        if port is None:
            raise TargetError(f"{self.endpoint}: serial port is not open")
        async with self._write_lock:  # keep concurrent writers' bytes in order
            try:
                await asyncio.to_thread(port.write, data)
            except (serial.SerialException, OSError) as e:
                self._closed = self._closed or f"serial port {self.url} went away: {e}"
                raise TargetError(f"{self.endpoint}: {self._closed}") from e

    async def stop(self) -> None:
        if self.uplink is not None:
            await self.uplink.close()
        self._stopping.set()
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.join, 2.0)
        port, self.port = self.port, None
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)
        self.console.writer = None

    # -- how the board reaches the gateway ---------------------------------------

    def device_server_uri(self, gateway_host: str, gateway_port: int) -> str:
        if self.uplink is None and not self.config.gateway_host and _is_local_only(gateway_host):
            raise TargetError(
                f"{self.endpoint}: a board on a serial port cannot reach a gateway listening on {gateway_host}"
                f" (this machine only); pass --gateway-host with this machine's address on the board's network"
                f" and make the gateway listen there"
            )
        return super().device_server_uri(gateway_host, gateway_port)

    async def bootstrap(self, server_uri: str, timeout: float = 10.0) -> None:
        if self.uplink is not None:
            await self.uplink.start_bridge(server_uri)
            self._bootstrap = [f"embserve connector lwm2m server_add {server_uri} {self.endpoint}"]
        await super().bootstrap(server_uri, timeout)

    async def reboot(self, timeout: float = 10.0) -> None:
        """``kernel reboot``, then the prompt of the new boot (never the one the command was typed at)."""
        self.boot.restart()
        await self.console.send_line("kernel reboot")
        await self._wait_for_boot(timeout, poke=False, how="'kernel reboot'")
        self.console.drain()
        if self.uplink is not None:
            await self.uplink.bring_up_interface(self.shell)
            for command in self._bootstrap:
                await self.shell.exec(command)

    def describe(self) -> str:
        board = self.config.board.name if self.config.board else "-"
        net = f", network over SLIP on {self.net_url} at {self.net_baudrate} baud" if self.net_url else ""
        return f"serial target, board {board} on {self.url} at {self.settings['baudrate']} baud{net}, endpoint {self.endpoint}"


def _is_local_only(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified

