"""Byte streams a SLIP bridge can run over: sockets, ptys, serial ports.

A link is anything with ``async read() -> bytes`` (``b""`` at end of
stream), ``async write(bytes)`` and ``async close()``. Three kinds:

- :class:`StreamLink` wraps an asyncio ``StreamReader``/``StreamWriter``
  pair: a TCP connection (QEMU's socket chardev, :func:`open_tcp_link`), one
  end of a socketpair, or a pty/character device file descriptor
  (:func:`open_fd_link`).
- :class:`SerialLink` drives a pyserial port (a real board's second UART,
  or anything ``serial.serial_for_url`` opens) from a reader thread, since
  pyserial only blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from typing import Any, Protocol, runtime_checkable

import serial

READ_SIZE = 4096  # bytes asked for per read; a SLIP line rarely has more waiting


@runtime_checkable
class SlipLink(Protocol):
    """A bidirectional byte stream."""

    name: str

    async def read(self) -> bytes:
        """Some bytes, as soon as any arrive; ``b""`` once the stream has ended."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class StreamLink:
    """A link over an asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str = "stream"):
        self.reader = reader
        self.writer = writer
        self.name = name

    async def read(self) -> bytes:
        return await self.reader.read(READ_SIZE)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()

    def __repr__(self) -> str:
        return f"StreamLink({self.name})"


async def open_tcp_link(host: str, port: int, *, timeout: float = 5.0) -> StreamLink:
    """Connect to a TCP server carrying SLIP, e.g. QEMU's ``-chardev socket,server=on`` for UART1."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"could not connect to the SLIP link at {host}:{port}: {exc or 'timed out'}") from exc
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return StreamLink(reader, writer, name=f"tcp:{host}:{port}")


async def open_fd_link(fd: int, name: str | None = None) -> StreamLink:
    """A link over a file descriptor that reads and writes, such as a pty master.

    The descriptor is duplicated (one copy per direction), so the caller keeps
    and closes ``fd``. For a pty, put the terminal in raw mode first
    (``tty.setraw``) or the line discipline rewrites bytes.
    """
    loop = asyncio.get_running_loop()
    read_file = os.fdopen(os.dup(fd), "rb", buffering=0)
    write_file = os.fdopen(os.dup(fd), "wb", buffering=0)
    try:
        reader = asyncio.StreamReader(limit=1 << 20)
        read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
        write_transport, write_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, write_file)
    except BaseException:
        read_file.close()
        write_file.close()
        raise
    writer = asyncio.StreamWriter(write_transport, write_protocol, reader, loop)
    return _PipeLink(reader, writer, read_transport, name=name or f"fd:{fd}")


class _PipeLink(StreamLink):
    """A stream pair over pipe transports, which have no close waiter to await."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_transport: asyncio.BaseTransport, name: str):
        super().__init__(reader, writer, name)
        self._read_transport = read_transport

    async def close(self) -> None:
        self._read_transport.close()
        self.writer.close()
        await asyncio.sleep(0)  # the transports close their descriptors on the next loop turn


class SerialLink:
    """A link over a pyserial port, read by a thread of its own.

    The port must have a read ``timeout`` (so the thread notices
    :meth:`close`); :func:`open_serial_link` sets one.
    """

    POLL = 0.05  # seconds the reader thread blocks at most before checking for close

    def __init__(self, port: serial.SerialBase, name: str | None = None):
        if port.timeout is None:
            port.timeout = self.POLL
        self.port = port
        self.name = name or f"serial:{port.port}"
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._pump, name=f"slip-{self.name}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._loop is not None
        try:
            while not self._stop.is_set():
                data = self.port.read(max(1, self.port.in_waiting))
                if data:
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, data)
        except (serial.SerialException, OSError) as exc:
            if not self._stop.is_set():
                self._loop.call_soon_threadsafe(self._queue.put_nowait, exc)
                return
        except RuntimeError:  # the event loop closed under us
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, b"")

    async def read(self) -> bytes:
        if self._ended:
            return b""
        if self._thread is None:
            self._start()
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise ConnectionError(f"serial port {self.port.port} failed: {item}") from item
        if not item:
            self._ended = True
        return item

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write_all, data)

    def _write_all(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5 * self.POLL + 1.0)
        self.port.close()

    def __repr__(self) -> str:
        return f"SerialLink({self.name})"


def open_serial_link(url: str, baudrate: int = 115200, **options: Any) -> SerialLink:
    """Open a serial port (device path or pyserial URL) for SLIP: raw 8N1, no flow control by default."""
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=SerialLink.POLL, **options)
    except (serial.SerialException, ValueError) as exc:
        raise ConnectionError(f"could not open serial port {url!r} for SLIP: {exc}") from exc
    return SerialLink(port, name=f"serial:{url}")


def as_link(stream: Any) -> SlipLink:
    """Accept a link, a ``(StreamReader, StreamWriter)`` pair or an open pyserial port."""
    if isinstance(stream, tuple) and len(stream) == 2:
        reader, writer = stream
        if isinstance(reader, asyncio.StreamReader) and isinstance(writer, asyncio.StreamWriter):
            return StreamLink(reader, writer)
    if isinstance(stream, serial.SerialBase):
        return SerialLink(stream)
    if isinstance(stream, SlipLink):
        return stream
    raise TypeError(
        f"cannot carry SLIP over {type(stream).__name__}: pass a (StreamReader, StreamWriter) pair, "
        "a pyserial port, or an object with async read/write/close"
    )
