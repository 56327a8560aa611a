"""A serial port shared over TCP with RFC 2217, as ser2net or a labgrid exporter does.

The Telnet/RFC 2217 protocol state is pyserial's :class:`serial.rfc2217.PortManager`;
this module is the server loop around it: one TCP client at a time (a second
one is turned away, as ser2net does), bytes from the client filtered through
the manager to the port, bytes from the port escaped back to the client.

It stands in for a lab's exporter in tests (``rfc2217://127.0.0.1:PORT``) and
can share a local board with another machine::

    async with Rfc2217Server("/dev/ttyACM0", host="0.0.0.0") as server:
        print(server.url)

Ports without modem control lines (pseudo-terminals, sockets) are fine: line
changes a client asks for are logged and ignored, and the lines read as off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any

import serial
from serial.rfc2217 import PortManager

from .ports import LOOPBACK

READ_TIMEOUT = 0.05
MODEM_POLL = 1.0  # seconds between modem-line notifications to the client

log = logging.getLogger(__name__)


class _LinesOptional:
    """The port as PortManager sees it: modem lines that a pty lacks read as off."""

    _LINES_IN = ("cts", "dsr", "ri", "cd")
    _LINES_OUT = ("dtr", "rts", "break_condition")

    def __init__(self, port: serial.SerialBase, logger: logging.Logger):
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "_log", logger)

    def __getattr__(self, name: str) -> Any:
        if name in self._LINES_IN:
            try:
                return getattr(self._port, name)
            except (OSError, serial.SerialException):
                return False
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            setattr(self._port, name, value)
        except (OSError, serial.SerialException) as e:
            if name not in self._LINES_OUT:
                raise
            self._log.info("%s: cannot set %s=%s (%s); ignored", self._port.port, name, value, e)


class Rfc2217Server:
    """Serves one serial port (a URL/path, or an open pyserial port) over RFC 2217; see the module docs."""

    def __init__(
        self,
        port: str | serial.SerialBase,
        *,
        host: str = LOOPBACK,
        tcp_port: int = 0,
        baudrate: int = 115200,
        logger: logging.Logger | None = None,
    ):
        self._port_spec = port
        self.host = host
        self.port = tcp_port
        self.baudrate = baudrate
        self.log = logger or log
        self.serial: serial.SerialBase | None = None
        self._owns_serial = isinstance(port, str)
        self._server: asyncio.AbstractServer | None = None
        self._client: asyncio.Task[None] | None = None
        self.clients_served = 0
        self.clients_refused = 0

    @property
    def url(self) -> str:
        return f"rfc2217://{self.host}:{self.port}"

    async def __aenter__(self) -> "Rfc2217Server":
        if isinstance(self._port_spec, str):
            self.serial = await asyncio.to_thread(
                serial.serial_for_url, self._port_spec, baudrate=self.baudrate, timeout=READ_TIMEOUT, exclusive=True
            )
        else:
            self.serial = self._port_spec
            self.serial.timeout = READ_TIMEOUT
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except BaseException:
            await self._close_serial()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self.log.info("RFC 2217 server for %s on %s", self.serial.port, self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        client = self._client
        if client is not None and not client.done():
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        await self._close_serial()

    async def _close_serial(self) -> None:
        port, self.serial = self.serial, None
        if port is not None and self._owns_serial:
            await asyncio.to_thread(port.close)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._client is not None and not self._client.done():
            self.clients_refused += 1
            writer.write(b"port is in use by another client\r\n")
            writer.close()
            return
        self._client = asyncio.current_task()
        self.clients_served += 1
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._relay(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        port = self.serial
        assert port is not None
        loop_thread = threading.get_ident()

        class Connection:
            """What PortManager writes protocol replies to; it calls from both threads."""

            @staticmethod
            def write(data: bytes) -> None:
                if threading.get_ident() == loop_thread:
                    writer.write(data)
                else:
                    loop.call_soon_threadsafe(writer.write, data)

        manager = PortManager(_LinesOptional(port, self.log), Connection(), self.log)
        stopping = threading.Event()

        def pump() -> None:
            """Port to client, plus modem-line notifications."""
            next_poll = 0.0
            while not stopping.is_set():
                try:
                    data = port.read(max(1, port.in_waiting))
                except (OSError, serial.SerialException) as e:
                    self.log.warning("%s: read failed, closing the client: %s", port.port, e)
                    loop.call_soon_threadsafe(writer.close)
                    return
                if data:
                    loop.call_soon_threadsafe(writer.write, b"".join(manager.escape(data)))
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + MODEM_POLL
                    with contextlib.suppress(OSError, serial.SerialException):
                        manager.check_modem_lines()

        thread = threading.Thread(target=pump, name=f"rfc2217 {port.port}", daemon=True)
        thread.start()
        try:
            while data := await reader.read(4096):
                out = b"".join(manager.filter(data))
                if out:
                    await asyncio.to_thread(port.write, out)
        except (ConnectionError, OSError) as e:
            self.log.info("%s: client gone: %s", port.port, e)
        finally:
            stopping.set()
            await asyncio.to_thread(thread.join, 2.0)
