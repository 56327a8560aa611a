"""Lifetime of one external server process (registry, broker, emulator...).

A :class:`ManagedProcess` runs its binary in its own process group with
output going to a log file, waits until a readiness probe passes, and always
stops the whole group: SIGTERM, a bounded wait, then SIGKILL. It is a sync
and an async context manager; an ``atexit`` hook stops whatever is still
alive when the interpreter exits without leaving the ``with`` block.

Subclasses say how to configure the server for a port (:meth:`prepare`) and
how to tell it is ready (:meth:`probe`). One whose output can run away sets
``log_limit``: its output then reaches the log through a pipe and
:class:`~hil.infra.logcap.CappedLog`, which stops writing at that size. Ports come from the OS; because a
port can be taken between choosing and binding it, a start that fails with
"address already in use" is retried on a new port.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

from .logcap import CappedLog
from .ports import LOOPBACK, free_port


class InfraError(RuntimeError):
    """A real infrastructure component could not be found, started or stopped."""


class MissingBinaryError(InfraError):
    """The server's binary is not installed."""


class StartupError(InfraError):
    """The server exited or did not become ready in time."""


class NotReady(Exception):
    """Raised by :meth:`ManagedProcess.probe`; its message is what the probe saw."""


_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        proc.stop(term_timeout=2.0)


atexit.register(_stop_all_at_exit)


def find_binary(name: str, candidates: tuple[str, ...], apt_package: str) -> str:
    """Path of ``name``: the first existing candidate, else a ``PATH`` lookup."""
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinaryError(
        f"{name} not found (looked in {', '.join(candidates)} and PATH); "
        f"install it with: apt-get install {apt_package}"
    )


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note saying why there are none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<no log: {exc}>"
    text = data[-16384:].decode("utf-8", errors="replace")
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<log is empty>"


def _exited_unreaped(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``pid`` to exit without reaping it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True  # already reaped elsewhere
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _claim_log_path(directory: Path, stem: str) -> Path:
    """Create ``stem.log`` (or ``stem-2.log``, ...) so that processes sharing a
    log directory never share a log file."""
    n = 1
    while True:
        candidate = directory / (f"{stem}.log" if n == 1 else f"{stem}-{n}.log")
        try:
            candidate.open("x").close()
            return candidate
        except FileExistsError:
            n += 1


class ManagedProcess:
    """Base class for a server on a free loopback port; see the module docs."""

    #: short name used for log files and messages
    name: str = "process"
    #: Debian package that provides the binary (for the missing-binary error)
    apt_package: str = ""
    #: binary name and places to look for it
    binary_name: str = ""
    binary_candidates: tuple[str, ...] = ()
    #: how often a start is retried when the port was taken meanwhile
    bind_attempts: int = 3
    #: bytes of output the log keeps (None: all of it)
    log_limit: int | None = None
    #: descriptors the child inherits (same numbers), e.g. a TAP device for an emulator
    pass_fds: tuple[int, ...] = ()

    def __init__(
        self,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        host: str = LOOPBACK,
        port: int | None = None,
        ready_timeout: float = 15.0,
        term_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self._fixed_port = port
        self.port = 0
        self.ready_timeout = ready_timeout
        self.term_timeout = term_timeout
        self.log_dir = Path(log_dir) if log_dir is not None else Path(
            tempfile.mkdtemp(prefix=f"embserve-hil-{self.name}-")
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = _claim_log_path(self.log_dir, self.name)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.output: CappedLog | None = None  # with log_limit: the last run's output

    # --- to be provided by subclasses ------------------------------------

    def prepare(self, port: int) -> list[str]:
        """Write whatever configuration the server needs for ``port``; return its argv."""
        raise NotImplementedError

    def probe(self) -> None:
        """Return when the server answers as expected, else raise :class:`NotReady`."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove per-run state after the process is gone (default: nothing)."""

    # --- public ------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def binary(self) -> str:
        return find_binary(self.binary_name, self.binary_candidates, self.apt_package)

    def start(self) -> Self:
        """Start the server and wait until it is ready; raise :class:`StartupError` if not."""
        if self._proc is not None:
            raise InfraError(f"{self.name} already started (pid {self._proc.pid})")
        attempts = 1 if self._fixed_port else self.bind_attempts
        try:
            for attempt in range(1, attempts + 1):
                self.port = self._fixed_port or free_port(self.host)
                argv = self.prepare(self.port)
                self._spawn(argv)
                if self._wait_ready(last_attempt=attempt == attempts):
                    return self
                self._terminate()  # port taken meanwhile: try another one
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")  # _wait_ready raises on the last attempt

    def stop(self, term_timeout: float | None = None) -> None:
        """Stop the process group (SIGTERM, wait, SIGKILL); safe to call twice."""
        self._terminate(term_timeout)
        self.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        starting = asyncio.ensure_future(asyncio.to_thread(self.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            # the thread cannot be interrupted: let it finish, then undo it
            with contextlib.suppress(BaseException):
                await starting
            await asyncio.to_thread(self.stop)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.address} {state} log={self.log_path}>"

    # --- internals -----------------------------------------------------------

    def _spawn(self, argv: list[str]) -> None:
        env = self.environment()
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            with self._lock:
                self._proc = subprocess.Popen(
                    argv,
                    pass_fds=self.pass_fds,
                    stdin=subprocess.DEVNULL,
                    stdout=log if self.log_limit is None else subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.log_dir,
                    start_new_session=True,  # own process group: stop kills all of it
                )
                if self.log_limit is not None:
                    assert self._proc.stdout is not None
                    self.output = CappedLog(self._proc.stdout, self.log_path, self.log_limit)
        with _live_lock:
            _live.add(self)

    def environment(self) -> dict[str, str]:
        """Environment of the child (subclasses drop variables that would override config)."""
        return dict(os.environ)

    def _wait_ready(self, *, last_attempt: bool) -> bool:
        """True when ready; False when the port was taken and another try is allowed."""
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        seen = "no probe yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = log_tail(self.log_path)
                if "address already in use" in tail.lower() and not last_attempt:
                    return False
                raise StartupError(
                    f"{self.name} exited with code {code} before becoming ready on {self.address}\n"
                    f"--- last lines of {self.log_path} ---\n{tail}"
                )
            try:
                self.probe()
                return True
            except NotReady as exc:
                seen = str(exc)
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"{self.name} (pid {self._proc.pid}) not ready on {self.address} after "
                    f"{self.ready_timeout:.1f}s; last probe: {seen}\n"
                    f"--- last lines of {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _terminate(self, term_timeout: float | None = None) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        with _live_lock:
            _live.discard(self)
        timeout = self.term_timeout if term_timeout is None else term_timeout
        pgid = proc.pid  # leader of its own session, so pgid == pid
        if proc.returncode is None:
            self._signal_group(pgid, signal.SIGTERM)
            if not _exited_unreaped(proc.pid, timeout):
                self._signal_group(pgid, signal.SIGKILL)
                _exited_unreaped(proc.pid, timeout)
            # Leader exited but is not reaped yet, so its pid cannot have been
            # reused: killing the group now hits only what it left behind.
            self._signal_group(pgid, signal.SIGKILL)
        else:
            self._signal_group(pgid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        if self.output is not None:
            self.output.close(timeout)  # the pipe has ended with the process group

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
