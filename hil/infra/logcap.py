"""A process's output into its log file, up to a size: what a runaway emulator cannot flood.

:class:`CappedLog` copies a pipe (a child's stdout) into a log file from a
thread of its own, so the child never blocks on a full pipe. Past
``limit`` bytes it stops writing, says so in the file once (``[embserve-hil]
log cut at ...``), and keeps only counting; :meth:`close` adds how much was
left out. The last warning and error lines stay in memory either way, so
an error message can quote them even after the cut (:meth:`last_warnings`),
with the first few (:meth:`first_warnings`), which often name the cause.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from pathlib import Path
from typing import BinaryIO

#: lines worth quoting when something goes wrong (Renode's "[WARNING]" / "[ERROR]")
WARNING = re.compile(rb"\b(WARNING|ERROR|FATAL)\b|warning:|error:", re.IGNORECASE)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.3g} MB" if size < 10_000_000 else f"{size / 1_000_000:.0f} MB"


class CappedLog:
    """Copies ``source`` into ``path`` (appending) until ``limit`` bytes; see the module docs."""

    def __init__(self, source: BinaryIO, path: Path, limit: int, *, keep_warnings: int = 20) -> None:
        if limit <= 0:
            raise ValueError(f"log limit must be positive, got {limit}")
        self.path = path
        self.limit = limit
        self.written = 0  # bytes of the source in the file
        self.dropped = 0  # bytes of the source left out after the cut
        self._source = source
        self._warnings: deque[str] = deque(maxlen=keep_warnings)
        self._first: list[str] = []
        self._keep = keep_warnings
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name=f"log {path.name}", daemon=True)
        self._thread.start()

    @property
    def cut(self) -> bool:
        return self.dropped > 0

    def last_warnings(self, count: int = 10) -> list[str]:
        with self._lock:
            return list(self._warnings)[-count:]

    def first_warnings(self, count: int = 3) -> list[str]:
        with self._lock:
            return self._first[:count]

    def describe_cut(self) -> str:
        """One line about the cut ("" when nothing was cut)."""
        if not self.cut:
            return ""
        return (f"{self.path} was cut at {_megabytes(self.limit)};"
                f" {_megabytes(self.dropped)} more output was left out")

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the source to end (the child exited), then note the cut in the file."""
        self._thread.join(timeout)
        note = self.describe_cut()
        if note:
            with open(self.path, "ab") as log:
                log.write(f"[embserve-hil] {note}\n".encode())

    def _pump(self) -> None:
        partial = b""
        read = getattr(self._source, "read1", self._source.read)  # read1: whatever has arrived, not a full 64 KiB
        with open(self.path, "ab") as log:
            while chunk := read(65536):
                *lines, partial = (partial + chunk).split(b"\n")
                warnings = [w.decode("utf-8", errors="replace").rstrip("\r") for w in lines if WARNING.search(w)]
                if warnings:
                    with self._lock:
                        self._warnings.extend(warnings)
                        self._first.extend(warnings[: self._keep - len(self._first)])
                if len(partial) > 65536:
                    partial = partial[-65536:]  # a line that never ends is not quoted whole
                room = self.limit - self.written
                if room > 0:
                    part = chunk[:room]
                    log.write(part)
                    log.flush()
                    self.written += len(part)
                    if len(part) < len(chunk):
                        log.write(f"\n[embserve-hil] log cut at {_megabytes(self.limit)};"
                                  f" further output is dropped (the last warnings are kept for error messages)\n"
                                  .encode())
                        log.flush()
                    self.dropped += len(chunk) - len(part)
                else:
                    self.dropped += len(chunk)
        self._source.close()
