"""The node's UART shell, after Zephyr's: prompt ``uart:~$ ``, command trees, Zephyr's messages.

A command is a node in a tree (:class:`Command`) with optional handler and
subcommands; like Zephyr's ``SHELL_CMD_ARG``, ``mandatory`` counts the
command word itself and ``optional`` the extra arguments allowed. The shell
walks the words down the tree, then:

* an unknown first word prints ``<cmd>: command not found``;
* an unknown word below a command without handler prints
  ``<cmd>: unknown parameter: <word>``;
* a command without handler (a group) prints its help;
* a wrong number of arguments prints ``<cmd>: wrong parameter count`` and the help;
* ``-h``/``--help`` anywhere prints the help of the command reached.

Handlers raise :class:`ShellError` for bad arguments; the shell prints the
message with the errno name (``-EINVAL``) and keeps the status in
:attr:`Shell.last_status`, as a Zephyr command returns ``-EINVAL``.

Input arrives as lines (:meth:`Shell.feed`, from the console) or through
:meth:`Shell.run_line`, which returns what the command printed. Either way the
line is echoed after the prompt and a new prompt follows, as on a UART.

The shell knows no node: it serves the commands it is given (the node's are
in :mod:`hil.device.shell_commands` and :mod:`hil.device.software`).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import shlex
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from .client import cancel_and_wait
from .console import Console

PROMPT = "uart:~$ "

HandlerResult = int | None
Handler = Callable[["Shell", list[str]], HandlerResult | Awaitable[HandlerResult]]


class ShellError(Exception):
    """A command's refusal; printed as ``<message> (-E<NAME>)``."""

    def __init__(self, message: str, code: int = errno.EINVAL):
        super().__init__(message)
        self.code = code


@dataclass
class Command:
    name: str
    help: str
    handler: Handler | None = None
    mandatory: int = 1
    optional: int = 0
    subcommands: dict[str, Command] = field(default_factory=dict)

    def add(self, *commands: Command) -> Command:
        for command in commands:
            self.subcommands[command.name] = command
        return self


class Shell:
    def __init__(
        self,
        console: Console,
        commands: list[Command] | None = None,
        uptime: Callable[[], float] | None = None,
    ):
        self.console = console
        self.root = Command("", "")
        self.root.add(Command("help", "Prints the help message.", _help))
        self.root.add(*(commands or []))
        self.uptime = uptime or (lambda: 0.0)
        self.last_status = 0
        self._capture: list[str] | None = None
        self._lock = asyncio.Lock()
        self._queue: list[str] = []
        self._worker: asyncio.Task[None] | None = None
        self._idle = False  # the prompt is showing and no command runs
        console.attach_input(self.feed)

    # ------------------------------------------------------------------ output

    def print(self, text: str = "") -> None:
        """Command output (one or more lines)."""
        for line in text.split("\n"):
            if self._capture is not None:
                self._capture.append(line)
            self.console.write(line + "\r\n")

    def error(self, text: str) -> None:
        self.print(text)

    def end_line(self) -> None:
        """Finish a pending partial line (the prompt) so new output starts on its own line."""
        if self.console.pending:
            self.console.write("\r\n")
        self._idle = False

    @property
    def busy(self) -> bool:
        """A command is running (its output, then the prompt, is still to come)."""
        return self._lock.locked()

    def show_prompt(self) -> None:
        self.console.write(PROMPT)
        self._idle = True

    def log(self, level: str, module: str, message: str) -> None:
        """A Zephyr log line ``[hh:mm:ss.mmm,uuu] <inf> module: message``; the prompt is redrawn after it."""
        line = f"[{_timestamp(self.uptime())}] <{level}> {module}: {message}"
        if self._idle:
            # Zephyr erases the prompt line, prints the log, then draws the prompt again
            self.console.write("\r" + line + "\r\n" + PROMPT)
        else:
            self.console.write(line + "\r\n")

    # ------------------------------------------------------------------ input

    def feed(self, line: str) -> None:
        """A line typed on the UART; commands run one after another, in order."""
        self._queue.append(line)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain(), name="shell-input")

    async def _drain(self) -> None:
        while self._queue:
            await self.run_line(self._queue.pop(0))

    async def run_line(self, line: str) -> str:
        """Run one command line as if typed; returns its output (without echo and prompt)."""
        async with self._lock:
            self._idle = False
            if not self.console.pending.endswith(PROMPT):
                self.console.write(PROMPT)
            self.console.write(line + "\r\n")
            self._capture = []
            try:
                self.last_status = await self._execute(line)
            finally:
                output, self._capture = self._capture, None
                self.show_prompt()
            return "\n".join(output)

    async def close(self) -> None:
        self._queue.clear()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            await cancel_and_wait(worker)

    # ------------------------------------------------------------------ execution

    async def _execute(self, line: str) -> int:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.error(f"{line.strip()}: {exc}")
            return -errno.EINVAL
        if not words:
            return 0
        command = self.root.subcommands.get(words[0])
        if command is None:
            self.error(f"{words[0]}: command not found")
            return -errno.ENOEXEC
        level = 1
        while level < len(words) and words[level] in command.subcommands:
            command = command.subcommands[words[level]]
            level += 1
        args = [words[level - 1], *words[level:]]
        if any(a in ("-h", "--help") for a in args[1:]):
            self._print_help(command)
            return 0
        if command.handler is None:
            if len(args) > 1:
                self.error(f"{' '.join(words[:level])}: unknown parameter: {args[1]}")
                return -errno.EINVAL
            self._print_help(command)
            return 1  # Zephyr's SHELL_CMD_HELP_PRINTED
        if not command.mandatory <= len(args) <= command.mandatory + command.optional:
            self.error(f"{command.name}: wrong parameter count")
            self._print_help(command)
            return -errno.EINVAL
        try:
            result = command.handler(self, args)
            if inspect.isawaitable(result):
                result = await result
        except ShellError as exc:
            self.error(f"{exc} (-{errno.errorcode.get(exc.code, str(exc.code))})")
            return -exc.code
        except Exception as exc:  # a command's bug must not take the shell down
            self.error(f"{command.name}: failed: {type(exc).__name__}: {exc} (-EIO)")
            return -errno.EIO
        return int(result or 0)

    def _print_help(self, command: Command) -> None:
        self.print(f"{command.name} - {command.help}")
        if command.subcommands:
            self.print("Subcommands:")
            self.print_commands(command.subcommands.values())

    def print_commands(self, commands: Iterable[Command]) -> None:
        """``  name  :help`` lines, sorted, names padded to one width (Zephyr's layout)."""
        items = sorted(commands, key=lambda c: c.name)
        width = max((len(c.name) for c in items), default=0)
        for c in items:
            self.print(f"  {c.name:<{width}}  :{c.help}")


def _help(shell: Shell, args: list[str]) -> int:
    shell.print("Please press the <Tab> button to see all available commands.")
    shell.print("You can also use the <Tab> button to prompt or auto-complete all commands or its subcommands.")
    shell.print("You can try to call commands with <-h> or <--help> parameter for more information.")
    shell.print()
    shell.print("Available commands:")
    shell.print_commands(shell.root.subcommands.values())
    return 0


def _timestamp(seconds: float) -> str:
    micros = round(max(seconds, 0.0) * 1_000_000)
    total_ms, us = divmod(micros, 1000)
    total_s, ms = divmod(total_ms, 1000)
    minutes, s = divmod(total_s, 60)
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d},{us:03d}"
