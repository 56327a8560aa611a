"""QEMU ``mps2-an385`` (Cortex-M3) running an embServe firmware ELF: the one QEMU process manager.

How the firmware's UARTs reach the host is a choice, ``console=``:

``"socket"`` (default)
    UART0 is a TCP socket chardev on a free loopback port with
    ``server=on,wait=on,nodelay=on``: QEMU does not start the CPU until we are
    connected, so no boot output is lost, and Nagle does not add ~40 ms to
    every shell round trip. :meth:`QemuMachine.console_attached` feeds a
    :class:`hil.console.Console` from it and lets the console write back.
    ``-no-reboot`` turns a guest reset (``kernel reboot``) into a clean QEMU
    exit, which :meth:`QemuMachine.wait_exit` reports with the exit code; to
    bring the node back, ``await stop_async()`` then ``await start_async()``
    (same object, same log file, new console streams).

``"pty"``
    UART0 is a pseudo-terminal (:attr:`QemuMachine.pty`, ``/dev/pts/N``): a
    board on a serial port, without hardware, which the serial target drives
    exactly as it drives a USB-serial adapter. QEMU drops console output while
    no one has the pty open, as a real port does before you attach; so, like
    a real bench, the board has a reset: the QEMU monitor (on the free
    loopback port) takes ``system_reset``, and
    :attr:`QemuMachine.reset_command` is a shell command that sends it, fit
    for a board file's ``reset_command``::

        python -m hil.infra.qemu reset 127.0.0.1:PORT

    There is no ``-no-reboot`` here: a guest reset restarts the firmware, as
    it would on a board.

With ``slip=True`` UART1 carries a SLIP network line too, wired like the
console: a second socket chardev (``server=on,wait=off,nodelay=on``), connected
right after the console and handed out by :meth:`QemuMachine.slip_link`
(ready for :class:`hil.net.SlipBridge`), or a second pty
(:attr:`QemuMachine.slip_pty`). Pass ``nic=None`` as well when the node should
have no Ethernet at all. Guest networking is otherwise QEMU user mode: the
host's loopback is 10.0.2.2 from inside. Semihosting is on so a firmware can
end QEMU with an exit code of its own.

Async use (socket console)::

    async with QemuMachine(elf, log_dir=tmp_path) as qemu, qemu.console_attached(console):
        await console.expect_prompt()

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
import re
import shlex
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Literal, Self

from ..console import Console
from ..net.links import StreamLink
from .ports import free_port
from .process import InfraError, ManagedProcess, NotReady, log_tail

MACHINE = "mps2-an385"
#: user-mode networking (slirp): guest 10.0.2.15/24, host reachable at 10.0.2.2
USER_NIC = "user,model=lan9118"
NETDEV = "net0"  # the user network's id, when something attaches to it
ConsoleWiring = Literal["socket", "pty"]
CONSOLE_WIRINGS = ("socket", "pty")
#: QEMU names each pty with the chardev's label: serial0 is UART0, serial1 UART1
_PTY = re.compile(r"char device redirected to (/dev/pts/\d+) \(label (\w+)\)")
_MONITOR_PROMPT = b"(qemu) "


class QemuError(InfraError):
    """QEMU misbehaved after starting (did not exit when expected, console closed...)."""


def qemu_arguments(
    firmware: Path,
    port: int,
    *,
    console: ConsoleWiring = "socket",
    nic: str | None = "lan9118",
    icount: str | None = None,
    extra_args: Sequence[str] = (),
    machine: str = MACHINE,
    host: str = "127.0.0.1",
    slip: bool = False,
    slip_port: int | None = None,
    qmp_port: int | None = None,
    paused: bool = False,
    pcap: Path | None = None,
) -> list[str]:
    """Arguments after the binary name.

    ``port``: where the console socket listens (``console="socket"``), or
    the monitor (``console="pty"``).
    ``nic``: ``"lan9118"`` for user networking, ``None`` for no network, or a
    complete ``-nic`` value (e.g. ``"socket,model=lan9118,udp=...,localaddr=..."``,
    or ``"tap,fd=N,model=lan9118,mac=..."`` with ``N`` in the machine's ``pass_fds``).
    ``icount``: the ``-icount`` value, e.g. ``"shift=auto,sleep=off"`` to
    fast-forward idle time.
    ``slip``: UART1 carries the SLIP line, on a listening socket on
    ``slip_port`` (socket wiring; a ``slip_port`` implies ``slip``) or on a
    second pty.
    ``qmp_port``: QMP (:mod:`hil.infra.qmp`) listens there, with ``nodelay``.
    ``paused``: the CPU waits for QMP's ``cont`` (``-S``).
    ``pcap``: every frame the board's NIC sends is written there (a
    ``filter-dump`` on the netdev's receive queue), stamped with the virtual
    clock: seconds since QEMU started (to the second) plus device time.
    """
    if console not in CONSOLE_WIRINGS:
        raise ValueError(f"console={console!r}: expected one of {', '.join(CONSOLE_WIRINGS)}")
    if nic is None:
        nic_value = "none"
    elif nic == "lan9118":
        nic_value = USER_NIC + (f",id={NETDEV}" if pcap is not None else "")
    elif "," in nic or nic in ("none", "user"):
        nic_value = nic
    else:
        raise ValueError(f"nic={nic!r}: expected 'lan9118', None or a full -nic value such as 'user,model=lan9118'")
    slip = slip or slip_port is not None
    args = [
        "-M", machine,
        "-display", "none",
        "-monitor", "none" if console == "socket" else f"tcp:{host}:{port},server=on,wait=off",
        "-kernel", str(firmware),
        "-nic", nic_value,
    ]
    if qmp_port is not None:
        # Before the console's chardev: QEMU opens chardevs in order and waits at the console's wait=on.
        args += ["-chardev", f"socket,id=qmp,host={host},port={qmp_port},server=on,wait=off,nodelay=on",
                 "-mon", "chardev=qmp,mode=control"]
    if console == "pty":
        args += ["-serial", "pty"]
        if slip:
            args += ["-serial", "pty"]  # the second -serial is UART1
    else:
        if slip:
            if slip_port is None:
                raise ValueError("slip=True with a socket console needs the slip_port UART1 listens on")
            # Defined before the console: QEMU opens chardevs in order and blocks on
            # the console's wait=on, so the SLIP socket is listening by then.
            args += ["-chardev", f"socket,id=slip,host={host},port={slip_port},server=on,wait=off,nodelay=on"]
        args += [
            "-chardev", f"socket,id=console,host={host},port={port},server=on,wait=on,nodelay=on",
            "-serial", "chardev:console",
        ]
        if slip:
            args += ["-serial", "chardev:slip"]  # the second -serial is UART1
        args += ["-no-reboot"]
    args += ["-semihosting-config", "enable=on,target=native"]
    if icount:
        args += ["-icount", icount]
    if paused:
        args += ["-S"]
    if pcap is not None:
        if nic != "lan9118":
            raise ValueError("pcap needs the board's NIC on user networking (nic='lan9118')")
        # The netdev's receive queue: what the guest sends, not what it is sent.
        args += ["-object", f"filter-dump,id=txdump,netdev={NETDEV},queue=rx,file={pcap}"]
    return args + list(extra_args)


def monitor_command(host: str, port: int, command: str, timeout: float = 5.0) -> str:
    """Run one command on a QEMU human monitor at host:port; its output."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        _read_until_prompt(sock, timeout)
        sock.sendall(command.encode() + b"\n")
        return _read_until_prompt(sock, timeout).decode(errors="replace")


def _read_until_prompt(sock: socket.socket, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(_MONITOR_PROMPT):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            chunk = None
        if not chunk:
            raise InfraError(f"QEMU monitor: no '(qemu)' prompt within {timeout:g} s; got {data[-200:]!r}")
        data += chunk
    return data


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
        console: ConsoleWiring = "socket",
        slip: bool = False,
        log_dir: str | os.PathLike[str] | None = None,
        nic: str | None = "lan9118",
        icount: str | None = None,
        extra_args: Sequence[str] = (),
        machine: str = MACHINE,
        name: str | None = None,
        pass_fds: Sequence[int] = (),
        ready_timeout: float = 10.0,
        term_timeout: float = 3.0,
        qmp: bool = False,
        paused: bool = False,
        pcap: str | os.PathLike[str] | None = None,
        niceness: int = 0,
    ) -> None:
        if name or console == "pty":
            self.name = name or "qemu-pty"  # per instance: names the log file
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout, term_timeout=term_timeout)
        self.firmware = Path(firmware).resolve()
        self.wiring = console  # "socket" or "pty"
        self.slip = slip
        self.nic = nic
        self.icount = icount
        self.extra_args = tuple(extra_args)
        self.machine = machine
        self.qmp = qmp
        self.paused = paused
        self.pcap = Path(pcap) if pcap is not None else None
        self.niceness = niceness
        self.pass_fds = tuple(pass_fds)  # e.g. the TAP device of nic="tap,fd=N,..."
        # Validate the wiring and network choice now, not when the process starts.
        qemu_arguments(self.firmware, 0, console=console, nic=nic, icount=icount, machine=machine, slip=slip,
                       slip_port=0 if slip and console == "socket" else None, pcap=self.pcap)
        # socket wiring
        self.console_socket: socket.socket | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.slip_port = 0
        self.qmp_port = 0  # with qmp=True, where QMP listens (known once started)
        self.slip_socket: socket.socket | None = None
        self.slip_reader: asyncio.StreamReader | None = None
        self.slip_writer: asyncio.StreamWriter | None = None
        # pty wiring
        self.pty: str | None = None  # UART0, the console
        self.slip_pty: str | None = None  # UART1, with slip=True
        self.returncode: int | None = None
        self.started_at: float | None = None  # time.monotonic() just before the process was spawned
        self.started_wall: float | None = None  # time.time() then

    # --- ManagedProcess hooks --------------------------------------------

    def prepare(self, port: int) -> list[str]:
        if not self.firmware.is_file():
            raise InfraError(f"firmware {self.firmware} does not exist (build it with: make -C firmware)")
        self._close_console()
        self.returncode = None
        # A new port each try: ManagedProcess retries when one was taken meanwhile.
        self.slip_port = free_port(self.host) if self.slip and self.wiring == "socket" else 0
        self.qmp_port = free_port(self.host) if self.qmp else 0
        if self.pcap is not None:
            self.pcap.unlink(missing_ok=True)  # QEMU appends to what is there
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        # Lower priority (nice): when the host is short of CPU, QEMU waits rather than its controller.
        prefix = ["nice", "-n", str(self.niceness)] if self.niceness else []
        return prefix + [self.binary()] + qemu_arguments(
            self.firmware, port, console=self.wiring, nic=self.nic, icount=self.icount, extra_args=self.extra_args,
            machine=self.machine, host=self.host, slip=self.slip, slip_port=self.slip_port or None,
            qmp_port=self.qmp_port or None, paused=self.paused, pcap=self.pcap,
        )

    def probe(self) -> None:
        if self.wiring == "pty":
            self._probe_ptys()
            return
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

    def _probe_ptys(self) -> None:
        ptys = {label: path for path, label in _PTY.findall(self.log_path.read_text(errors="replace"))}
        wanted = ["serial0", "serial1"] if self.slip else ["serial0"]
        missing = [label for label in wanted if label not in ptys]
        if missing:
            raise NotReady(f"QEMU has not said which pty {' and '.join(missing)} is on yet")
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                _read_until_prompt(sock, 1.0)
        except (OSError, InfraError) as e:
            raise NotReady(f"monitor {self.address}: {e}") from None
        self.pty = ptys["serial0"]
        self.slip_pty = ptys.get("serial1")

    def cleanup(self) -> None:
        self._close_console()

    # --- lifetime ----------------------------------------------------------

    def stop(self, term_timeout: float | None = None) -> None:
        proc = self._proc
        super().stop(term_timeout)
        if proc is not None and self.returncode is None:
            self.returncode = proc.returncode

    async def start_async(self) -> Self:
        """Start QEMU; with a socket console, connect :attr:`reader`/:attr:`writer` to it (and the SLIP line's)."""
        await ManagedProcess.__aenter__(self)
        if self.wiring == "pty":
            return self
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

    # --- the console and the SLIP line (socket wiring) --------------------------

    async def pump_console(self, on_bytes: Callable[[bytes], None]) -> None:
        """Hand every console byte to ``on_bytes`` until QEMU closes the console."""
        reader = self._streams()[0]
        with contextlib.suppress(ConnectionResetError):
            while data := await reader.read(4096):
                on_bytes(data)

    async def write_console(self, data: bytes) -> None:
        """Type ``data`` into UART0 (a :attr:`hil.console.Console.writer`)."""
        writer = self._streams()[1]
        # The guest UART holds one byte; QEMU's chardev buffers the rest.
        writer.write(data)
        await writer.drain()

    @contextlib.asynccontextmanager
    async def console_attached(self, console: Console) -> AsyncIterator[Console]:
        """``console`` fed from UART0 and writing back to it while the block runs (closing it stays the caller's)."""
        self._streams()
        console.writer = self.write_console
        pump = asyncio.get_running_loop().create_task(self.pump_console(console.feed), name=f"{self.name} console")
        try:
            yield console
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    def slip_link(self, name: str | None = None) -> StreamLink:
        """UART1's socket as a link for :class:`hil.net.SlipBridge` or :class:`hil.net.SlipEndpoint`."""
        if self.slip_reader is None or self.slip_writer is None:
            raise QemuError(f"{self.name}: no SLIP line connected; use slip=True with the socket console and 'async with'")
        return StreamLink(self.slip_reader, self.slip_writer, name=name or f"{self.name} UART1 ({self.host}:{self.slip_port})")

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            hint = "its console is a pty (console='pty'): open it as a serial port" if self.wiring == "pty" \
                else "use 'async with' or start_async()"
            raise QemuError(f"{self.name}: console not connected; {hint}")
        return self.reader, self.writer

    # --- the monitor (pty wiring) ------------------------------------------------

    def monitor(self, command: str, timeout: float = 5.0) -> str:
        """One command on QEMU's human monitor; its output."""
        if self.wiring != "pty":
            raise QemuError(f"{self.name}: the monitor is on only with console='pty'")
        return monitor_command(self.host, self.port, command, timeout)

    def reset(self) -> None:
        """Reset the guest, as the reset button of a board would."""
        self.monitor("system_reset")

    @property
    def reset_command(self) -> str:
        """A shell command that resets this board (for a board file's ``reset_command``)."""
        if self.wiring != "pty":
            raise QemuError(f"{self.name}: a reset command needs the monitor, which is on only with console='pty'")
        return shlex.join([sys.executable, "-m", "hil.infra.qemu", "reset", self.address])

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
        self.pty = self.slip_pty = None
        for sock in socks:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else f"exited {self.returncode}"
        if self.wiring == "pty":
            wiring = f"console {self.pty or 'pty'}{f' slip {self.slip_pty}' if self.slip else ''} monitor {self.address}"
        else:
            wiring = f"console {self.address}{f' slip {self.host}:{self.slip_port}' if self.slip else ''}"
        return f"<QemuMachine {self.firmware.name} {wiring} {state} log={self.log_path}>"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "reset" or ":" not in argv[1]:
        print("usage: python -m hil.infra.qemu reset HOST:PORT", file=sys.stderr)
        return 2
    host, port = argv[1].rsplit(":", 1)
    try:
        monitor_command(host, int(port), "system_reset")
    except (OSError, InfraError, ValueError) as e:
        print(f"reset through the QEMU monitor at {argv[1]} failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
