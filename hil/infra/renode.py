"""Renode, headless: the process and a client for its monitor.

:class:`RenodeProcess` runs ``renode --disable-xwt --plain --port N
--pid-file F`` with ``HOME`` and ``TMPDIR`` pointed at private directories
(Renode writes ``~/.config/renode``, and at start deletes every
``$TMPDIR/renode-*`` directory that no live Renode owns: a shared TMPDIR
would lose other programs' directories named like that). It is ready once
the monitor port answers. Its output goes to the log through
:class:`~hil.infra.logcap.CappedLog`: a firmware that runs away can make
Renode print warnings at a huge rate, so the log stops at
:data:`LOG_LIMIT` (and says so), keeping the last warnings for error
messages (:meth:`RenodeProcess.diagnosis`). :data:`LOG_LEVEL` is the
monitor's ``logLevel`` the target sets before it creates a machine.

:class:`RenodeMonitor` is the conversation on that port. Renode's monitor is a
telnet-style line editor: it opens with telnet option bytes (IAC DO BINARY,
WILL ECHO, WILL SUPPRESS-GO-AHEAD, WONT LINEMODE), echoes what it is sent,
colours its output, and prompts ``(monitor)`` before a machine exists and
``(<machine>)`` after ``mach create``. A command's output is what comes
between its echo and the next prompt; Renode reports a failed command in that
text (it does not close the connection), so :meth:`RenodeMonitor.execute`
raises :class:`RenodeError` when the text says a command failed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import shutil
import socket
from pathlib import Path

from .process import InfraError, ManagedProcess, MissingBinaryError, NotReady, log_tail

INSTALL_HINT = (
    "install Renode and put `renode` on PATH (or set $RENODE to the binary): unpack Renode's portable Linux"
    " build (renode-*.linux-portable.tar.gz from github.com/renode/renode/releases), or use Antmicro's"
    " renode-run (`renode-run download`) or conda-forge's renode-cli package; see README, 'Renode'"
)
#: the monitor prompt, alone on the last line
PROMPT = re.compile(r"(?:^|\n)\((?P<name>[^()\s]+)\) ?$")
#: how Renode says a monitor command failed
ERROR = re.compile(
    r"There was an error executing command|No such command or device|Could not tokenize|Bad parameters for command"
    r"|Error E\d+:|does not provide a field|Could not find|Unhandled exception|is not a valid",
    re.IGNORECASE,
)
#: seconds to wait for the monitor's greeting before asking for a prompt with an empty line
GREETING_WAIT = 3.0
#: bytes of Renode's output a log keeps: far more than a healthy run writes (a few KB)
LOG_LIMIT = 16_000_000
#: Renode's log level for the machine (0 debug, 1 info, 2 warning, 3 error): warnings stay visible
LOG_LEVEL = 2
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")
IAC, SB, SE = 255, 250, 240
_WILL_WONT_DO_DONT = (251, 252, 253, 254)


class RenodeError(InfraError):
    """Renode refused a monitor command, or the monitor went quiet; the message shows what it said."""


def renode_binary() -> str:
    """Path of the renode binary: ``$RENODE``, else ``renode`` on PATH."""
    configured = os.environ.get("RENODE")
    if configured:
        if os.access(configured, os.X_OK):
            return configured
        raise MissingBinaryError(f"$RENODE is {configured!r}, which is not an executable file; {INSTALL_HINT}")
    found = shutil.which("renode")
    if not found:
        raise MissingBinaryError(f"renode is not on PATH; {INSTALL_HINT}")
    return found


class TelnetText:
    """Turns the monitor's byte stream into plain text: telnet commands and ANSI escapes removed."""

    def __init__(self) -> None:
        self._state = "data"
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        out = bytearray()
        for byte in data:
            if self._state == "data":
                if byte == IAC:
                    self._state = "iac"
                else:
                    out.append(byte)
            elif self._state == "iac":
                if byte == IAC:
                    out.append(IAC)
                    self._state = "data"
                elif byte in _WILL_WONT_DO_DONT:
                    self._state = "option"
                elif byte == SB:
                    self._state = "sub"
                else:
                    self._state = "data"  # a two-byte command (NOP, GA, ...)
            elif self._state == "option":
                self._state = "data"
            elif self._state == "sub":
                if byte == IAC:
                    self._state = "sub-iac"
            elif self._state == "sub-iac":
                self._state = "data" if byte == SE else "sub"
        text = self._decoder.decode(bytes(out))
        return _ANSI.sub("", text).replace("\r", "")


class RenodeMonitor:
    """One connection to Renode's monitor; see the module docs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, transcript: Path | None = None):
        self._reader = reader
        self._writer = writer
        self._text = TelnetText()
        self._buffer = ""
        self._transcript = open(transcript, "a", encoding="utf-8") if transcript else None
        self.prompt: str | None = None  # name inside the last prompt: "monitor" or the machine's

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float = 10.0, transcript: Path | None = None) -> "RenodeMonitor":
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        monitor = cls(reader, writer, transcript=transcript)
        try:
            try:
                await monitor._read_prompt(min(GREETING_WAIT, timeout), "the first prompt")
            except RenodeError:
                # Seen under load: Renode accepted the connection but never greeted it. An empty line
                # makes its line editor print a prompt.
                monitor._log("> (empty line: no greeting yet)\n")
                writer.write(b"\n")
                await writer.drain()
                await monitor._read_prompt(timeout, "the first prompt (asked for with an empty line)")
        except BaseException:
            monitor.close()
            raise
        return monitor

    async def execute(self, command: str, timeout: float = 30.0) -> str:
        """Run ``command``; its output (echo and prompt removed). :class:`RenodeError` if it failed."""
        self._log(f"> {command}\n")
        self._writer.write(command.encode() + b"\n")
        await self._writer.drain()
        text = await self._read_prompt(timeout, repr(command))
        lines = text.split("\n")
        # The line editor echoes the command (possibly with the old prompt in front).
        if lines and lines[0].strip().endswith(command.strip()):
            lines = lines[1:]
        output = "\n".join(line.rstrip() for line in lines).strip("\n")
        if ERROR.search(output):
            raise RenodeError(f"Renode refused {command!r}:\n{output}")
        return output

    async def quit(self, timeout: float = 10.0) -> None:
        """Send ``quit``: Renode exits and closes the connection."""
        self._log("> quit\n")
        with contextlib.suppress(OSError):
            self._writer.write(b"quit\n")
            await self._writer.drain()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            while await asyncio.wait_for(self._reader.read(4096), timeout):
                pass
        self.close()

    def close(self) -> None:
        self._writer.close()
        if self._transcript:
            self._transcript.close()
            self._transcript = None

    async def _read_prompt(self, timeout: float, waiting_for: str) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            match = PROMPT.search(self._buffer)
            if match:
                text, self._buffer = self._buffer[: match.start()], ""
                self.prompt = match.group("name")
                return text.lstrip("\n")
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                data = await asyncio.wait_for(self._reader.read(4096), remaining)
            except asyncio.TimeoutError:
                raise RenodeError(
                    f"Renode monitor: no prompt after {waiting_for} within {timeout:g} s; it said:\n{self._buffer[-1500:]}"
                ) from None
            if not data:
                raise RenodeError(f"Renode monitor closed the connection while waiting for {waiting_for}; it said:\n"
                                  f"{self._buffer[-1500:]}")
            text = self._text.feed(data)
            self._log(text)
            self._buffer += text

    def _log(self, text: str) -> None:
        if self._transcript:
            self._transcript.write(text)
            self._transcript.flush()


class RenodeProcess(ManagedProcess):
    """``renode`` headless with its monitor on a free port; see the module docs."""

    name = "renode"

    def __init__(self, *, log_dir: str | os.PathLike[str] | None = None, name: str | None = None,
                 ready_timeout: float = 30.0, term_timeout: float = 5.0, log_limit: int = LOG_LIMIT) -> None:
        if name:
            self.name = name  # per instance: names the log, pid file, HOME and TMPDIR of each Renode in a log directory
        self.log_limit = log_limit
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout, term_timeout=term_timeout)
        self.home = self.log_dir / f"{self.name}-home"
        self.tmp = self.log_dir / f"{self.name}-tmp"
        self.pid_file = self.log_dir / f"{self.name}.pid"

    def binary(self) -> str:
        return renode_binary()

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        self.home.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(self.home)  # Renode writes ~/.config/renode
        self.tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(self.tmp)  # Renode's start-up clean-up deletes $TMPDIR/renode-* it does not own
        return env

    def diagnosis(self, first: int = 3, last: int = 6) -> str:
        """Where Renode's log is, whether it was cut, and its first and last warnings: for an error message."""
        lines = [f"Renode log: {self.log_path}"]
        if self.output is not None:
            if self.output.cut:
                lines[0] += f" ({self.output.describe_cut()})"
            head, tail = self.output.first_warnings(first), self.output.last_warnings(last)
        else:
            found = [line for line in log_tail(self.log_path, 400).splitlines() if "WARNING" in line or "ERROR" in line]
            head, tail = [], found[-last:]
        if not tail:
            return "\n".join([*lines, "no warnings in it"])
        if head and head != tail[: len(head)]:
            lines += ["its first warnings:", *(f"    | {line}" for line in head)]
        lines += ["its last warnings:", *(f"    | {line}" for line in tail)]
        return "\n".join(lines)

    def prepare(self, port: int) -> list[str]:
        return [self.binary(), "--disable-xwt", "--plain", "--port", str(port), "--pid-file", str(self.pid_file)]

    def probe(self) -> None:
        if "Monitor available in telnet mode" not in log_tail(self.log_path, 200):
            raise NotReady("Renode has not announced its monitor yet")
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                pass
        except OSError as e:
            raise NotReady(f"monitor {self.address}: {e}") from None
