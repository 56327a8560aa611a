"""QEMU ``mps2-an385`` with its console on a pseudo-terminal: a board on a serial port, without hardware.

``-serial pty`` gives the firmware's UART0 a real tty device node
(``/dev/pts/N``), so the serial target drives it exactly as it drives a
USB-serial adapter. QEMU drops console output while no one has the pty open,
as a real port does before you attach; so, like a real bench, the board has a
reset: the QEMU monitor (on a free loopback TCP port) takes ``system_reset``,
and :attr:`QemuPtyBoard.reset_command` is a shell command that sends it, fit
for a board file's ``reset_command``::

    python -m hil.infra.qemu_pty reset 127.0.0.1:PORT

There is no ``-no-reboot`` here: a guest reset restarts the firmware, as it
would on a board. Guest networking is QEMU user mode; the host's loopback is
10.0.2.2 from inside.

With ``net_pty=True`` UART1 is a second pty (:attr:`QemuPtyBoard.net_pty`),
the wire a board without a network uses for SLIP; pass ``nic=None`` so the
node has no other way out.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
import time
from pathlib import Path

from .process import InfraError, ManagedProcess, NotReady

MACHINE = "mps2-an385"
#: QEMU names each pty with the chardev's label: serial0 is UART0, serial1 UART1
_PTY = re.compile(r"char device redirected to (/dev/pts/\d+) \(label (\w+)\)")
_MONITOR_PROMPT = b"(qemu) "


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


class QemuPtyBoard(ManagedProcess):
    """QEMU running a firmware with its console on a pty; see the module docs."""

    name = "qemu-pty"
    apt_package = "qemu-system-arm"
    binary_name = "qemu-system-arm"
    binary_candidates = ("/usr/bin/qemu-system-arm",)

    def __init__(
        self,
        firmware: str | os.PathLike[str],
        *,
        log_dir: str | os.PathLike[str] | None = None,
        nic: str | None = "user,model=lan9118",
        net_pty: bool = False,
        machine: str = MACHINE,
        ready_timeout: float = 10.0,
        term_timeout: float = 3.0,
    ) -> None:
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout, term_timeout=term_timeout)
        self.firmware = Path(firmware).resolve()
        self.nic = nic
        self.machine = machine
        self.with_net_pty = net_pty
        self.pty: str | None = None  # UART0, the console
        self.net_pty: str | None = None  # UART1, when asked for

    def prepare(self, port: int) -> list[str]:
        if not self.firmware.is_file():
            raise InfraError(f"firmware {self.firmware} does not exist (build it with: make -C firmware)")
        self.pty = self.net_pty = None
        return [
            self.binary(),
            "-M", self.machine,
            "-display", "none",
            "-kernel", str(self.firmware),
            "-nic", self.nic or "none",
            "-serial", "pty",
            *(["-serial", "pty"] if self.with_net_pty else []),  # the second -serial is UART1
            "-monitor", f"tcp:{self.host}:{port},server=on,wait=off",
            "-semihosting-config", "enable=on,target=native",
        ]

    def probe(self) -> None:
        ptys = {label: path for path, label in _PTY.findall(self.log_path.read_text(errors="replace"))}
        wanted = ["serial0", "serial1"] if self.with_net_pty else ["serial0"]
        missing = [label for label in wanted if label not in ptys]
        if missing:
            raise NotReady(f"QEMU has not said which pty {' and '.join(missing)} is on yet")
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                _read_until_prompt(sock, 1.0)
        except (OSError, InfraError) as e:
            raise NotReady(f"monitor {self.address}: {e}") from None
        self.pty = ptys["serial0"]
        self.net_pty = ptys.get("serial1")

    def cleanup(self) -> None:
        self.pty = self.net_pty = None

    def monitor(self, command: str, timeout: float = 5.0) -> str:
        return monitor_command(self.host, self.port, command, timeout)

    def reset(self) -> None:
        """Reset the guest, as the reset button of a board would."""
        self.monitor("system_reset")

    @property
    def reset_command(self) -> str:
        """A shell command that resets this board (for a board file's ``reset_command``)."""
        return shlex.join([sys.executable, "-m", "hil.infra.qemu_pty", "reset", self.address])


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "reset" or ":" not in argv[1]:
        print("usage: python -m hil.infra.qemu_pty reset HOST:PORT", file=sys.stderr)
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
