"""A client for QEMU's machine protocol (QMP) over TCP, blocking and thread-safe.

``qmp = QmpClient.connect(host, port)`` reads QEMU's greeting and leaves
negotiation mode; :meth:`QmpClient.execute` runs one command and returns its
``return`` value (a :class:`QmpError` names the command and QEMU's error),
:meth:`QmpClient.hmp` one human-monitor command. Events QEMU sends in
between (``STOP``, ``RESUME``...) are kept in :attr:`QmpClient.events`. One
command at a time; threads share the connection through a lock.

It blocks on purpose: the harness steps an emulated machine from a thread of
its own (:mod:`hil.targets.qemu_clock`), where a busy event loop cannot make
it late. QEMU writes an answer and an event in separate segments, so the
chardev must have ``nodelay=on``: with Nagle, ``stop`` and ``cont`` take
45 ms each (the second segment waits for our delayed ACK); with it, 0.3 ms.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from typing import Any

from .process import InfraError


class QmpError(InfraError):
    """QEMU refused a command, or the QMP connection failed."""


class QmpClient:
    def __init__(self, sock: socket.socket, name: str = "QEMU"):
        self._sock = sock
        self._file = sock.makefile("rb")
        self.name = name
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, host: str, port: int, *, name: str = "QEMU", timeout: float = 5.0) -> QmpClient:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise QmpError(f"{name}: cannot reach QMP at {host}:{port}: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(sock, name)
        try:
            greeting = client._message("the greeting")
            if "QMP" not in greeting:
                raise QmpError(f"{name}: {host}:{port} did not greet as QMP: {greeting}")
            client.execute("qmp_capabilities")
        except BaseException:
            client.close()
            raise
        return client

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run ``command``; its ``return`` value."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        with self._lock:
            try:
                self._sock.sendall(json.dumps(request).encode() + b"\n")
            except OSError as e:
                raise QmpError(f"{self.name}: QMP connection failed sending {command}: {e}") from None
            while True:
                message = self._message(command)
                if "event" in message:
                    self.events.append(message)
                    continue
                if "error" in message:
                    error = message["error"]
                    raise QmpError(f"{self.name}: {command} failed: {error.get('class')}: {error.get('desc')}")
                return message.get("return")

    def hmp(self, command_line: str) -> str:
        """One human-monitor command (e.g. ``xp /2wx 0x40028014``); what it printed."""
        return self.execute("human-monitor-command", **{"command-line": command_line})

    def status(self) -> str:
        """The VM's run state: ``running``, ``paused`` (``stop``, or a debugger's Ctrl-C), ``debug`` (a
        breakpoint), ``prelaunch``..."""
        return self.execute("query-status")["status"]

    def close(self) -> None:
        for closable in (self._file, self._sock):
            try:
                closable.close()
            except OSError:
                pass

    def _message(self, command: str) -> dict[str, Any]:
        try:
            line = self._file.readline()
        except socket.timeout:
            raise QmpError(f"{self.name}: no answer to {command} within {self._sock.gettimeout():g} s") from None
        except OSError as e:
            raise QmpError(f"{self.name}: QMP connection failed during {command}: {e}") from None
        if not line:
            raise QmpError(f"{self.name}: QMP connection closed during {command} (QEMU exited?)")
        try:
            return json.loads(line)
        except ValueError:
            raise QmpError(f"{self.name}: not QMP: {line[:200]!r}") from None
