"""A device console: background reader, log file, and line matching.

Every backend (simulator, QEMU, Renode, serial port) feeds the raw bytes it
receives into :meth:`Console.feed` from the moment the device is created, so
nothing printed during boot is lost. Tests then ``await console.expect(...)``:
a match consumes the buffered lines up to and including the matching one, so
the next expect only sees what came after. Patterns registered with
:meth:`Console.fail_on` make any waiting expect fail at once when they appear
(a HardFault dump, a kernel panic).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Pattern

from .progress import waiting

PROMPT = "uart:~$ "

# ANSI escapes Zephyr's shell emits (colours, cursor moves); stripped for matching.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ConsoleTimeout(TimeoutError):
    """A wait on the console ran out; the message shows what was seen."""


class ConsoleFailure(AssertionError):
    """A line matching a fail-on pattern appeared on the console."""


@dataclass
class ConsoleLine:
    text: str
    time: float  # wall clock (time.time()) when the line completed


def _compile(pattern: str | Pattern[str]) -> Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))


class Console:
    """Line buffer over a byte stream from one device.

    ``writer`` sends bytes to the device (an async callable); it is set by the
    backend once its transport is open.
    """

    def __init__(self, name: str, log_path: Path | None = None, *, history: int = 5000):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "a", encoding="utf-8", errors="replace") if log_path else None
        self._partial = ""
        self._pending: deque[ConsoleLine] = deque()  # not yet consumed by expect()
        self.history: deque[ConsoleLine] = deque(maxlen=history)  # everything, for error messages
        self._changed = asyncio.Event()
        self._fail_patterns: list[Pattern[str]] = []
        self._failure: str | None = None
        self.writer: Callable[[bytes], Awaitable[None]] | None = None
        self.listeners: list[Callable[[str], None]] = []
        self.bytes_in = 0

    # -- input from the device ------------------------------------------------
    def feed(self, data: bytes | str) -> None:
        """Called by the backend's reader with whatever arrived, in order."""
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        self.bytes_in += len(text)
        text = self._partial + text
        # A CR at the end of a chunk may be the first half of a CR LF split
        # across reads (QEMU sends each UART byte on its own): keep it back.
        held = "\r" if text.endswith("\r") else ""
        text = _ANSI.sub("", text[: len(text) - len(held)]).replace("\r\n", "\n").replace("\r", "\n")
        *complete, partial = text.split("\n")
        self._partial = partial + held
        for line in complete:
            self._add_line(line)
        self._changed.set()

    def _add_line(self, text: str) -> None:
        line = ConsoleLine(text, time.time())
        self._pending.append(line)
        self.history.append(line)
        if self._log:
            self._log.write(text + "\n")
            self._log.flush()
        for pattern in self._fail_patterns:
            if pattern.search(text):
                self._failure = self._failure or text
        for listener in self.listeners:
            listener(text)

    # -- matching -----------------------------------------------------------
    def fail_on(self, *patterns: str | Pattern[str]) -> None:
        self._fail_patterns.extend(_compile(p) for p in patterns)

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise ConsoleFailure(f"{self.name}: console printed {self._failure!r}{self._where()}")

    def _where(self) -> str:
        return f" (full console log: {self.log_path})" if self.log_path else ""

    def tail(self, n: int = 15) -> str:
        lines = [line.text for line in list(self.history)[-n:]]
        if self._partial:
            lines.append(self._partial + "  <no newline yet>")
        return "\n".join(f"    | {t}" for t in lines) or "    | <nothing received>"

    def _take(self, pattern: Pattern[str], include_partial: bool) -> tuple[list[str], re.Match[str]] | None:
        for i, line in enumerate(self._pending):
            m = pattern.search(line.text)
            if m:
                before = [self._pending.popleft().text for _ in range(i)]
                self._pending.popleft()
                return before, m
        if include_partial and self._partial:
            m = pattern.search(self._partial)
            if m:
                before = [line.text for line in self._pending]
                self._pending.clear()
                self._partial = ""
                return before, m
        return None

    async def expect(
        self, pattern: str | Pattern[str], timeout: float = 10.0, *, partial: bool = False
    ) -> re.Match[str]:
        """Wait for a line matching ``pattern``; consume the lines up to it.

        ``partial`` also matches the unterminated last line (a prompt).
        """
        return (await self.read_until(pattern, timeout, partial=partial))[1]

    async def read_until(
        self, pattern: str | Pattern[str], timeout: float = 10.0, *, partial: bool = False
    ) -> tuple[list[str], re.Match[str]]:
        """Like :meth:`expect`, also returning the lines consumed before the match."""
        compiled = _compile(pattern)
        with waiting(f"{self.name}: a line matching {compiled.pattern!r}", timeout):
            return await self._read_until(compiled, timeout, partial)

    async def _read_until(self, compiled: Pattern[str], timeout: float, partial: bool) -> tuple[list[str], re.Match[str]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self._check_failure()
            taken = self._take(compiled, partial)
            if taken:
                return taken
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise ConsoleTimeout(
                    f"{self.name}: no console line matched {compiled.pattern!r} within {timeout:g} s."
                    f" Last lines seen:\n{self.tail()}{self._where()}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def expect_prompt(self, timeout: float = 10.0, prompt: str = PROMPT) -> None:
        await self.expect(prompt.rstrip(), timeout, partial=True)

    def drain(self) -> list[str]:
        """Consume and return everything buffered so far."""
        lines = [line.text for line in self._pending]
        self._pending.clear()
        return lines

    # -- output to the device -------------------------------------------------
    async def write(self, data: bytes | str) -> None:
        if self.writer is None:
            raise RuntimeError(f"{self.name}: console is not connected to a device")
        await self.writer(data.encode() if isinstance(data, str) else data)

    async def send_line(self, text: str) -> None:
        await self.write(text + "\n")

    def close(self) -> None:
        if self._partial:
            self._add_line(self._partial)
            self._partial = ""
        if self._log:
            self._log.close()
            self._log = None


class Shell:
    """Zephyr-style shell over a console: send a command, return its output lines."""

    def __init__(self, console: Console, prompt: str = PROMPT):
        self.console = console
        self.prompt = prompt

    async def exec(self, command: str, timeout: float = 10.0) -> list[str]:
        """Run ``command``; its output is every line between the echo and the next prompt."""
        self.console.drain()
        await self.console.send_line(command)
        await self.console.expect(re.compile(re.escape(command.strip()) + r"\s*$"), timeout)
        lines, _ = await self.console.read_until(
            re.compile("^" + re.escape(self.prompt.rstrip())), timeout, partial=True
        )
        return lines
