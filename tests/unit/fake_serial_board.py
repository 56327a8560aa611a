"""A fake board for the serial target's unit tests: a scripted Zephyr-like shell on a pty.

The test owns the pty's master side; the serial target opens the slave as
it would open /dev/ttyACM0. The fake echoes what it is sent, answers a few
shell commands, and "reboots" (banner, then prompt) when its reset line is
pulsed or when something connects to its reset port, which is what a
reset command in a board file does here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import tty

import serial

PROMPT = b"uart:~$ "
BANNER = b"*** Booting fake embServe board v1.0 ***\r\n"


class FakeBoard:
    def __init__(self, *, mode: str = "shell"):
        # mode: "shell" answers; "silent" prints nothing; "garbage" prints wrong-baud noise;
        # "chatty" prints text but never a prompt
        self.mode = mode
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.commands: list[str] = []
        self.boots = 0
        self._line = bytearray()
        self._reset_server: asyncio.AbstractServer | None = None
        self.reset_port = 0
        os.set_blocking(self.master, False)

    async def __aenter__(self) -> "FakeBoard":
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._readable)
        self._reset_server = await asyncio.start_server(self._on_reset_connection, "127.0.0.1", 0)
        self.reset_port = self._reset_server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        if self._reset_server is not None:
            self._reset_server.close()
            await self._reset_server.wait_closed()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def reset_command(self) -> str:
        """A shell command that resets this board: connect to its reset port."""
        code = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1]))).close()"
        return shlex.join([sys.executable, "-c", code, str(self.reset_port)])

    async def _on_reset_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self.boot()

    def hang_up(self) -> None:
        """The board goes away (cable pulled): close the master side."""
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)

    # -- what the board prints ---------------------------------------------

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, data)

    def boot(self) -> None:
        self.boots += 1
        self._line.clear()
        if self.mode == "shell":
            self._send(BANNER + b"[00:00:00.001] <inf> main: sensors ready\r\n" + PROMPT)
        elif self.mode == "garbage":
            self._send(bytes([0xF8, 0x00, 0x80, 0xFE, 0x1C, 0xE0, 0x06, 0x9F, 0x78, 0x00, 0xFF, 0x86]) * 6)
        elif self.mode == "chatty":
            self._send(BANNER + b"waiting for something\r\n")

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return  # nobody has the slave open (EIO): nothing was sent
        if self.mode != "shell":
            return
        for byte in data:
            if byte in b"\r\n":
                line = self._line.decode(errors="replace")
                self._line.clear()
                self._send(b"\r\n")
                self._run(line.strip())
            else:
                self._line.append(byte)
                self._send(bytes([byte]))  # the shell echoes what is typed

    def _run(self, line: str) -> None:
        if line:
            self.commands.append(line)
        words = line.split()
        out = b""
        if not words:
            pass
        elif words[0] == "help":
            out = b"Available commands:\r\n  embserve :embServe commands\r\n  sensor   :Sensor commands\r\n"
        elif words[:4] == ["embserve", "connector", "lwm2m", "server_add"] and len(words) == 6:
            out = f"LwM2M server {words[4]} added, endpoint {words[5]}\r\n".encode()
        elif words[:2] == ["sensor", "set"] and len(words) == 4:
            out = f"{words[2]} = {words[3]}\r\n".encode()
        else:
            out = f"{words[0]}: command not found\r\n".encode()
        self._send(out + PROMPT)


class FakeBoardLines(serial.Serial):
    """The serial port an RFC 2217 server opens on a fake board: DTR is the board's reset line.

    While DTR is active the board is held in reset; releasing it boots the
    board, as the reset circuit of many boards behaves.
    """

    def __init__(self, board: FakeBoard, loop: asyncio.AbstractEventLoop):
        self.board = board
        self.loop = loop
        self.dtr_changes: list[bool] = []
        super().__init__()
        self.dtr = False  # released from the start: opening must not reset the board
        self.port = board.path
        self.open()

    def _update_dtr_state(self) -> None:  # pyserial's hook; a pty has no DTR line of its own
        released = self.dtr_changes[-1:] == [True] and not self._dtr_state
        self.dtr_changes.append(self._dtr_state)
        if released:
            self.loop.call_soon_threadsafe(self.board.boot)

    def _update_rts_state(self) -> None:
        pass
