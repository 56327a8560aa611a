"""QEMU ``mps2-an385`` (Cortex-M3) running an embServe firmware ELF.

The console (UART0) is a TCP socket chardev on a free loopback port with
``server=on,wait=on,nodelay=on``: QEMU does not start the CPU until we are
connected, so no boot output is lost, and Nagle does not add ~40 ms to every
shell round trip. ``-no-reboot`` turns a guest reset (``kernel reboot``) into
a clean QEMU exit, which :meth:`QemuMachine.wait_exit` reports with the exit
code; to bring the node back, ``await stop_async()`` then ``await
start_async()`` (same object, same log file, new console streams).
Semihosting is on so a firmware can end QEMU with an exit code of its own.

With ``slip=True`` UART1 is a second socket chardev (``server=on,wait=off,
nodelay=on``) for a SLIP network line: :meth:`probe` connects to it right
after the console, and :attr:`QemuMachine.slip_reader`/:attr:`slip_writer`
(async) or :attr:`slip_socket` (sync) carry it, ready for
:class:`hil.net.SlipBridge`. Pass ``nic=None`` as well when the node should
have no Ethernet at all.

Async use (streams are connected to UART0)::

    async with QemuMachine(elf, log_dir=tmp_path) as qemu:
        qemu.writer.write(b"help\\n")
        line = await qemu.reader.readline()

Sync use: ``with QemuMachine(elf, log_dir=...) as qemu:`` and talk to the
blocking :attr:`QemuMachine.console_socket`.

Lifetime handling (process group, SIGTERM then SIGKILL, retry when the port
was taken between choosing and binding it, cleanup at interpreter exit) comes
from :class:`hil.infra.process.ManagedProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

from .ports import free_port
from .process import InfraError, ManagedProcess, NotReady, log_tail

MACHINE = "mps2-an385"
#: user-mode networking (slirp): guest 10.0.2.15/24, host reachable at 10.0.2.2
USER_NIC = "user,model=lan9118"


class QemuError(InfraError):
    """QEMU misbehaved after starting (did not exit when expected, console closed...)."""


def qemu_arguments(
    firmware: Path,
    console_port: int,
    *,
    nic: str | None = "lan9118",
    icount: str | None = None,
    extra_args: Sequence[str] = (),
    machine: str = MACHINE,
    host: str = "127.0.0.1",
    slip_port: int | None = None,
) -> list[str]:
    """Arguments after the binary name.

    ``nic``: ``"lan9118"`` for user networking, ``None`` for no network, or a
    complete ``-nic`` value (e.g. ``"socket,model=lan9118,udp=...,localaddr=..."``).
    ``icount``: the ``-icount`` value, e.g. ``"shift=auto,sleep=off"`` to
    fast-forward idle time.
    ``slip_port``: put UART1 on a listening socket on that port (the SLIP line).
    """
    if nic is None:
        nic_value = "none"
    elif nic == "lan9118":
        nic_value = USER_NIC
    elif "," in nic or nic in ("none", "user"):
        nic_value = nic
    else:
        raise ValueError(f"nic={nic!r}: expected 'lan9118', None or a full -nic value such as 'user,model=lan9118'")
    args = [
        "-M", machine,
        "-display", "none",
        "-monitor", "none",
        "-kernel", str(firmware),
        "-nic", nic_value,
    ]
    if slip_port is not None:
        # Defined before the console: QEMU opens chardevs in order and blocks on
        # the console's wait=on, so the SLIP socket is listening by then.
        args += ["-chardev", f"socket,id=slip,host={host},port={slip_port},server=on,wait=off,nodelay=on"]
    args += [
        "-chardev", f"socket,id=console,host={host},port={console_port},server=on,wait=on,nodelay=on",
        "-serial", "chardev:console",
    ]
    if slip_port is not None:
        args += ["-serial", "chardev:slip"]  # the second -serial is UART1
    args += [
        "-no-reboot",
        "-semihosting-config", "enable=on,target=native",
    ]
    if icount:
        args += ["-icount", icount]
    return args + list(extra_args)


class QemuMachine(ManagedProcess):
    """One QEMU process; see the module docs."""

    name = "qemu"
    apt_package = "qemu-system-arm"
    binary_name = "qemu-system-arm"
    binary_candidates = ("/usr/bin/qemu-system-arm",)

    def __init__(
        self,
        firmware: str | os.PathLike[str],
        *,
        log_dir: str | os.PathLike[str] | None = None,
        nic: str | None = "lan9118",
        icount: str | None = None,
        extra_args: Sequence[str] = (),
        machine: str = MACHINE,
        name: str | None = None,
        ready_timeout: float = 10.0,
        term_timeout: float = 3.0,
        slip: bool = False,
    ) -> None:
        if name:
            self.name = name  # per instance: names the log file
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout, term_timeout=term_timeout)
        self.firmware = Path(firmware).resolve()
        self.nic = nic
        self.icount = icount
        self.extra_args = tuple(extra_args)
        self.machine = machine
        self.slip = slip
        # Validate the network choice now, not when the process starts.
        qemu_arguments(self.firmware, 0, nic=nic, icount=icount, machine=machine)
        self.console_socket: socket.socket | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.slip_port = 0
        self.slip_socket: socket.socket | None = None
        self.slip_reader: asyncio.StreamReader | None = None
        self.slip_writer: asyncio.StreamWriter | None = None
        self.returncode: int | None = None
        self.started_at: float | None = None  # time.monotonic() just before the process was spawned

    # --- ManagedProcess hooks --------------------------------------------

    def prepare(self, port: int) -> list[str]:
        if not self.firmware.is_file():
            raise InfraError(f"firmware {self.firmware} does not exist (build it with: make -C firmware)")
        self._close_console()
        self.returncode = None
        # A new port each try: ManagedProcess retries when one was taken meanwhile.
        self.slip_port = free_port(self.host) if self.slip else 0
        self.started_at = time.monotonic()
        return [self.binary()] + qemu_arguments(
            self.firmware, port, nic=self.nic, icount=self.icount, extra_args=self.extra_args,
            machine=self.machine, host=self.host, slip_port=self.slip_port or None,
        )

    def probe(self) -> None:
        # The console first: QEMU waits for it before it starts the CPU. Once
        # connected it is kept, since QEMU serves only that first client.
        if self.console_socket is None:
            self.console_socket = self._connect(self.port, "console")
        if self.slip and self.slip_socket is None:
            self.slip_socket = self._connect(self.slip_port, "SLIP line (UART1)")

    def _connect(self, port: int, what: str) -> socket.socket:
        # ManagedProcess probes every 50 ms; QEMU needs ~60-100 ms before it
        # listens, so retry every 5 ms here to keep start-to-prompt short.
        deadline = time.monotonic() + 0.5
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(1.0)
                sock.connect((self.host, port))
            except OSError as exc:
                sock.close()
                if time.monotonic() >= deadline or not self.running:
                    raise NotReady(f"{what} {self.host}:{port}: {exc}") from None
                time.sleep(0.005)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

    def cleanup(self) -> None:
        self._close_console()

    # --- lifetime ----------------------------------------------------------

    def stop(self, term_timeout: float | None = None) -> None:
        proc = self._proc
        super().stop(term_timeout)
        if proc is not None and self.returncode is None:
            self.returncode = proc.returncode

    async def start_async(self) -> Self:
        """Start QEMU and connect :attr:`reader`/:attr:`writer` to its console."""
        await ManagedProcess.__aenter__(self)
        try:
            assert self.console_socket is not None
            self.reader, self.writer = await asyncio.open_connection(sock=self.console_socket)
            if self.slip:
                assert self.slip_socket is not None
                self.slip_reader, self.slip_writer = await asyncio.open_connection(sock=self.slip_socket)
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        return self

    async def stop_async(self) -> None:
        for writer in (self.writer, self.slip_writer):
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Self:
        return await self.start_async()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_async()

    # --- exit detection ----------------------------------------------------

    def poll(self) -> int | None:
        """QEMU's exit code if it has exited (e.g. after a guest reset), else None."""
        proc = self._proc
        if proc is not None:
            code = proc.poll()
            if code is not None:
                self.returncode = code
        return self.returncode

    def wait(self, timeout: float) -> int:
        """Block until QEMU exits; its exit code. :class:`QemuError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                raise self._still_running(timeout)
            time.sleep(0.01)
        return code

    async def wait_exit(self, timeout: float) -> int:
        """Wait until QEMU exits; its exit code. :class:`QemuError` after ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (code := self.poll()) is None:
            if asyncio.get_running_loop().time() >= deadline:
                raise self._still_running(timeout)
            await asyncio.sleep(0.01)
        return code

    async def pump_console(self, on_bytes: Callable[[bytes], None]) -> None:
        """Hand every console byte to ``on_bytes`` until QEMU closes the console."""
        if self.reader is None:
            raise QemuError(f"{self.name}: console not connected; use 'async with' or start_async()")
        with contextlib.suppress(ConnectionResetError):
            while data := await self.reader.read(4096):
                on_bytes(data)

    # --- internals -----------------------------------------------------------

    def _still_running(self, timeout: float) -> QemuError:
        return QemuError(
            f"{self.name} (pid {self.pid}) still running after {timeout:g} s"
            f"\n--- last lines of {self.log_path} ---\n{log_tail(self.log_path)}"
        )

    def _close_console(self) -> None:
        socks = (self.console_socket, self.slip_socket)
        self.console_socket = self.slip_socket = None
        self.reader = self.writer = self.slip_reader = self.slip_writer = None
        for sock in socks:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else f"exited {self.returncode}"
        slip = f" slip {self.host}:{self.slip_port}" if self.slip else ""
        return f"<QemuMachine {self.firmware.name} console {self.address}{slip} {state} log={self.log_path}>"
