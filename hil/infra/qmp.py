"""A client for QEMU's machine protocol (QMP) over TCP, asyncio.

``qmp = await QmpClient.connect(host, port)`` reads QEMU's greeting and
leaves negotiation mode; :meth:`QmpClient.execute` runs one command and
returns its ``return`` value (a :class:`QmpError` names the command and
QEMU's error), :meth:`QmpClient.hmp` one human-monitor command. Events QEMU
sends in between (``STOP``, ``RESUME``...) are kept in :attr:`QmpClient.events`.
One command at a time: callers share the connection through a lock.

QEMU writes an answer and an event in separate segments, so the chardev
must have ``nodelay=on``: with Nagle, ``stop`` and ``cont`` take 45 ms each
(the second segment waits for our delayed ACK); with it, 0.3 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any

from .process import InfraError


class QmpError(InfraError):
    """QEMU refused a command, or the QMP connection failed."""


class QmpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str = "QEMU"):
        self._reader = reader
        self._writer = writer
        self.name = name
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, host: str, port: int, *, name: str = "QEMU", timeout: float = 5.0) -> QmpClient:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise QmpError(f"{name}: cannot reach QMP at {host}:{port}: {e}") from None
        client = cls(reader, writer, name)
        try:
            greeting = await client._message(timeout)
            if "QMP" not in greeting:
                raise QmpError(f"{name}: {host}:{port} did not greet as QMP: {greeting}")
            await client.execute("qmp_capabilities", timeout=timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def execute(self, command: str, *, timeout: float = 5.0, **arguments: Any) -> Any:
        """Run ``command``; its ``return`` value."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        async with self._lock:
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            while True:
                message = await self._message(timeout, command)
                if "event" in message:
                    self.events.append(message)
                    continue
                if "error" in message:
                    error = message["error"]
                    raise QmpError(f"{self.name}: {command} failed: {error.get('class')}: {error.get('desc')}")
                return message.get("return")

    async def hmp(self, command_line: str, *, timeout: float = 5.0) -> str:
        """One human-monitor command (e.g. ``xp /2wx 0x40028014``); what it printed."""
        return await self.execute("human-monitor-command", timeout=timeout, **{"command-line": command_line})

    async def status(self) -> str:
        """The VM's run state: ``running``, ``paused`` (stopped by a ``stop``), ``debug`` (by the gdbstub), ``prelaunch``..."""
        return (await self.execute("query-status"))["status"]

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)

    async def _message(self, timeout: float, command: str = "the greeting") -> dict[str, Any]:
        try:
            # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a cancellation that meets an answer.
            async with asyncio.timeout(timeout):
                line = await self._reader.readline()
        except TimeoutError:
            raise QmpError(f"{self.name}: no answer to {command} within {timeout:g} s") from None
        except (OSError, ConnectionError) as e:
            raise QmpError(f"{self.name}: QMP connection failed during {command}: {e}") from None
        if not line:
            raise QmpError(f"{self.name}: QMP connection closed during {command} (QEMU exited?)")
        try:
            return json.loads(line)
        except ValueError:
            raise QmpError(f"{self.name}: not QMP: {line[:200]!r}") from None
