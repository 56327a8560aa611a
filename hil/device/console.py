"""The simulated node's UART console.

Output is a stream of text, exactly as a serial line would carry it (Zephyr
ends lines with ``\\r\\n`` and leaves the prompt ``uart:~$ `` without one).
Two kinds of listeners can attach: raw listeners get every chunk as written,
line listeners get each completed line without its terminator. The harness'
background reader attaches to one of these; tests can also wait on a line
with :meth:`Console.wait_for`.

Input goes the other way (:meth:`Console.write_input`): characters typed into
the UART, handed to the shell line by line.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Callable
from re import Pattern

RawListener = Callable[[str], None]
LineListener = Callable[[str], None]
InputHandler = Callable[[str], None]

HISTORY_LINES = 2000  # completed lines kept for inspection and for wait_for error messages


class ConsoleTimeout(TimeoutError):
    """:meth:`Console.wait_for` saw no matching line in time; the message shows the last lines."""


class Console:
    def __init__(self, name: str = "node", history: int = HISTORY_LINES):
        self.name = name
        self.lines: collections.deque[str] = collections.deque(maxlen=history)
        self._partial = ""
        self.line_count = 0  # lines completed since the console was made (history may have dropped some)
        self._raw: list[RawListener] = []
        self._line: list[LineListener] = []
        self._input_handler: InputHandler | None = None
        self._input_buffer = ""

    # ------------------------------------------------------------------ output (device -> host)

    def write(self, text: str) -> None:
        """Device output; completed lines go to the history and to line listeners."""
        if not text:
            return
        for listener in list(self._raw):
            listener(text)
        data = self._partial + text
        *complete, self._partial = re.split(r"\r?\n", data)
        for line in complete:
            line = line.rstrip("\r")
            if "\r" in line:
                # a carriage return redraws the line (as Zephyr does around the prompt)
                line = line.rsplit("\r", 1)[1]
            self.lines.append(line)
            self.line_count += 1
            for listener in list(self._line):
                listener(line)

    def print(self, line: str = "") -> None:
        self.write(line + "\r\n")

    @property
    def pending(self) -> str:
        """Output after the last line end (e.g. the prompt while the shell waits)."""
        return self._partial

    @property
    def text(self) -> str:
        """Everything kept in the history, lines joined with ``\\n``, plus the pending part."""
        return "\n".join([*self.lines, self._partial])

    def mark(self) -> int:
        """A position in the output for ``wait_for(..., since=mark)``: only lines after it count."""
        return self.line_count

    def add_listener(self, listener: RawListener) -> Callable[[], None]:
        """Raw output chunks as they are written; returns a function that detaches the listener."""
        self._raw.append(listener)
        return lambda: self._raw.remove(listener) if listener in self._raw else None

    def add_line_listener(self, listener: LineListener) -> Callable[[], None]:
        """Every completed output line (no terminator); returns a function that detaches it."""
        self._line.append(listener)
        return lambda: self._line.remove(listener) if listener in self._line else None

    async def wait_for(
        self,
        pattern: str | Pattern[str],
        timeout: float = 5.0,
        *,
        since: int | None = None,
    ) -> re.Match[str]:
        """Wait for a completed line matching the regular expression ``pattern``.

        Lines already in the history count too, from ``since`` on (a value of
        :meth:`mark` taken earlier; default: every line still in the history).
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        dropped = self.line_count - len(self.lines)
        start = 0 if since is None else max(0, since - dropped)
        for line in list(self.lines)[start:]:
            match = regex.search(line)
            if match:
                return match
        found: asyncio.Future[re.Match[str]] = asyncio.get_running_loop().create_future()

        def check(line: str) -> None:
            match = regex.search(line)
            if match and not found.done():
                found.set_result(match)

        remove = self.add_line_listener(check)
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            tail = "\n".join(f"    {line}" for line in list(self.lines)[-15:])
            raise ConsoleTimeout(
                f"console of {self.name}: no line matching {regex.pattern!r} within {timeout} s; last lines:\n{tail}"
            ) from None
        finally:
            remove()

    # ------------------------------------------------------------------ input (host -> device)

    def attach_input(self, handler: InputHandler | None) -> None:
        """Where completed input lines go (the shell)."""
        self._input_handler = handler

    def write_input(self, text: str) -> None:
        """Characters typed into the UART; each line (``\\n`` or ``\\r``) goes to the shell."""
        self._input_buffer += text
        while True:
            match = re.search(r"\r\n|\r|\n", self._input_buffer)
            if not match:
                return
            line, self._input_buffer = (
                self._input_buffer[: match.start()],
                self._input_buffer[match.end() :],
            )
            if self._input_handler is not None:
                self._input_handler(line)
