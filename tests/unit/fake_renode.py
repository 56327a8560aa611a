"""A fake ``renode`` executable for the Renode target's unit tests (Renode itself is not installable here).

Run as ``python fake_renode.py --disable-xwt --plain --port N --pid-file F``.
It behaves as the measured Renode 1.16.1 does where the target depends on it
(/work/shared/docs/renode.md): it announces its monitor on stdout, opens the
monitor with telnet option bytes, echoes, colours its prompt ``(monitor)`` /
``(<machine>)``, reports bad commands in text (``There was an error executing
command ...``), serves raw-byte socket terminals, and on ``start`` boots a
tiny shell on the console UART. Every monitor command is appended to
``$FAKE_RENODE_LOG`` so a test can check the conversation (after a first
line with its ``HOME`` and ``TMPDIR``). ``logLevel N`` is taken in any
state, as Renode takes it. With ``$FAKE_RENODE_WARNINGS`` set to a number of
bytes, ``start`` makes it print that much of "[WARNING]" lines on stdout
instead of booting, as Renode does when a firmware for another board runs
away.

A UART connected to a terminal named ``slip`` is the node's SLIP line, and
the tiny shell plays the reference firmware's part on it (the real SLIP codec
and IPv4/UDP builder from ``hil.net``): ``net iface slip`` brings ``sl0`` up
(192.0.2.2, peer 192.0.2.1), ``embserve connector lwm2m server_add URI EP``
sends one UDP datagram ``register EP`` to the URI's host and port, and every
UDP datagram that comes back is printed on the console as
``[net] udp from HOST:PORT: PAYLOAD``.

The harness's clock (hil/targets/renode_clock.py) is faked as far as its
monitor side goes: ``include`` of its script, ``hil_clock PERIPHERAL KIND
FLAG LOG``, the quantum and advance-immediately switches, and the device time
query. Device time runs at the host's pace while the flag file exists and 50
times faster while it does not, as the real script makes Renode do; every
datagram the fake firmware sends on the SLIP line is written to the log with
its device time (as the script's hook does) and creates the flag.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

from hil.net.ipv4 import PacketError, build_udp, parse_ipv4, parse_udp
from hil.net.slip import SlipDecoder, slip_encode

RED, YELLOW, RESET = "\x1b[31;1m", "\x1b[33;1m", "\x1b[0m"
TELNET_HELLO = bytes([255, 253, 0, 255, 251, 1, 255, 251, 3, 255, 252, 34])
SLIP_IP, SLIP_PEER = "192.0.2.2", "192.0.2.1"


class Machine:
    def __init__(self, name: str):
        self.name = name
        self.peripherals: set[str] = set()
        self.elf: str | None = None
        self.terminals: dict[str, socket.socket] = {}
        self.connected: dict[str, str] = {}  # uart -> terminal
        self.started = False
        self.virtual_time = 0.0
        self.clock: tuple[str, str] | None = None  # the harness's clock script: (flag file, tx log)
        self.advance_immediately = False
        self._since = time.monotonic()

    def now(self) -> float:
        """Device time: the host's pace, or 50 times that while the harness's clock lets it skip."""
        wall = time.monotonic()
        if self.started:
            skipping = self.clock is not None and self.advance_immediately and not os.path.exists(self.clock[0])
            self.virtual_time += (wall - self._since) * (50.0 if skipping else 1.0)
        self._since = wall
        return self.virtual_time

    def sent(self, datagram: bytes) -> None:
        """What the clock script's hook does when a packet leaves: log its device time, then keep pace."""
        if self.clock is not None:
            flag, log = self.clock
            with open(log, "a") as f:
                f.write(f"{self.now():.9f} 1 -\n")  # not CoAP: it starts an exchange, as far as the hook can tell
            open(flag, "a").close()


class FakeRenode:
    def __init__(self, log_path: str | None):
        self.machine: Machine | None = None
        self.log_path = log_path
        self.quit = threading.Event()
        self.uart_client: socket.socket | None = None
        self.slip_client: socket.socket | None = None
        self.sl0_up = False
        self.line_noise = b"boot noise"

    def record(self, line: str) -> None:
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(line + "\n")

    @property
    def prompt(self) -> str:
        return f"{YELLOW}({self.machine.name if self.machine else 'monitor'}) {RESET}"

    def execute(self, line: str) -> str:
        """The output of one monitor command (errors in red, as Renode prints them)."""
        self.record(line)
        m = self.machine
        if m_ := re.fullmatch(r'mach create "([^"]+)"', line):
            self.machine = Machine(m_.group(1))
            return ""
        if line == "quit":
            self.quit.set()
            return ""
        if re.fullmatch(r"logLevel [0-3]", line):
            return ""
        if m is None:
            return f"{RED}There was an error executing command '{line}'{RESET}\nNo machine selected."
        if m_ := re.fullmatch(r"machine LoadPlatformDescription @(\S+)", line):
            path = m_.group(1)
            stock = {"sysbus.usart2", "sysbus.usart3", "sysbus.uart0", "sysbus.uart1", "sysbus.ethernet"}
            if path.startswith("platforms/"):
                m.peripherals |= stock
                return ""
            if not os.path.isfile(path):
                return f"{RED}There was an error executing command '{line}'{RESET}\nCould not find file '{path}'"
            text = open(path).read()
            m.peripherals |= {f"sysbus.{name}" for name in re.findall(r"^(\w+):", text, re.M)}
            if re.search(r'^using "platforms/', text, re.M):
                m.peripherals |= stock  # one of Renode's own platforms, extended
            return ""
        if m_ := re.fullmatch(r"sysbus LoadELF @(.+)", line):
            if not os.path.isfile(m_.group(1)):
                return f"{RED}There was an error executing command '{line}'{RESET}\nCould not find file '{m_.group(1)}'"
            m.elf = m_.group(1)
            return ""
        if m_ := re.fullmatch(r'emulation CreateServerSocketTerminal (\d+) "(\w+)" false', line):
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", int(m_.group(1))))
            server.listen(1)
            m.terminals[m_.group(2)] = server
            serve = self.accept_slip if m_.group(2) == "slip" else self.accept_uart
            threading.Thread(target=serve, args=(server,), daemon=True).start()
            return ""
        if m_ := re.fullmatch(r"connector Connect (\S+) (\w+)", line):
            uart, term = m_.groups()
            if uart == "host.tap" or term == "switch":
                return ""
            if uart not in m.peripherals:
                return f"{RED}There was an error executing command '{line}'{RESET}\nCould not find peripheral '{uart}'"
            if term not in m.terminals:
                return f"{RED}There was an error executing command '{line}'{RESET}\nCould not find external '{term}'"
            m.connected[uart] = term
            return ""
        if line.startswith(("emulation CreateSwitch", "emulation CreateTap")):
            return ""
        if m_ := re.fullmatch(r"include @(\S+\.py)", line):
            return "" if os.path.isfile(m_.group(1)) else f"{RED}There was an error executing command '{line}'{RESET}"
        if m_ := re.fullmatch(r'hil_clock "(\S+)" "(slip|eth)" "(\S+)" "(\S+)"', line):
            if m_.group(1) not in m.peripherals:
                return f"{RED}There was an error executing command '{line}'{RESET}\nKeyNotFoundException"
            m.now()
            m.clock = (m_.group(3), m_.group(4))
            return f"embserve-hil clock on {m_.group(1)} ({m_.group(2)})"
        if re.fullmatch(r'emulation SetGlobalQuantum "[\d.]+"', line):
            return ""
        if m_ := re.fullmatch(r"emulation SetGlobalAdvanceImmediately (true|false)", line):
            m.now()
            m.advance_immediately = m_.group(1) == "true"
            return ""
        if line == 'python "print(self.Machine.ElapsedVirtualTime.TimeElapsed.TotalSeconds)"':
            return f"{m.now():.4f}"
        if line == "start":
            m.now()
            m.started = True
            threading.Thread(target=self.boot, daemon=True).start()
            return "Starting emulation..."
        if line == "pause":
            m.now()
            m.started = False
            return ""
        if line == "machine ElapsedVirtualTime":
            return f"{m.now():.6f}s (fake)"
        return f"{RED}There was an error executing command '{line}'{RESET}\nNo such command or device: {line.split()[0]}"

    # -- the UART side ----------------------------------------------------------

    def accept_uart(self, server: socket.socket) -> None:
        client, _ = server.accept()
        self.uart_client = client
        buffer = b""
        while True:
            data = client.recv(4096)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode().strip()
                reply = f"{text}\r\n"
                if text == "help":
                    reply += "Available commands:\r\n  sensor   :Sensor commands\r\n"
                elif text == "net iface slip":
                    reply += self.select_slip()
                elif text.startswith("embserve connector lwm2m server_add "):
                    reply += self.server_add(text.split()[4:])
                elif text:
                    reply += f"{text.split()[0]}: done\r\n"
                client.sendall((reply + "uart:~$ ").encode())

    # -- the SLIP line (the reference firmware's part, much reduced) ------------------

    def slip_connected(self) -> bool:
        m = self.machine
        return m is not None and "slip" in m.connected.values() and self.slip_client is not None

    def select_slip(self) -> str:
        if not self.slip_connected():
            return "net iface: sl0 is not available on this board\r\n"
        self.sl0_up = True
        return f"sl0 (SLIP on UART1) is up: address {SLIP_IP} netmask 255.255.255.0 gateway {SLIP_PEER}\r\n"

    def server_add(self, args: list[str]) -> str:
        if len(args) != 2:
            return "server_add: usage: server_add URI ENDPOINT\r\n"
        uri, endpoint = urlsplit(args[0]), args[1]
        if self.sl0_up and self.slip_client is not None:
            packet = build_udp(SLIP_IP, 56830, uri.hostname, uri.port or 5683, f"register {endpoint}".encode())
            # Line noise before the first frame, as a UART has after power-up.
            noise, self.line_noise = self.line_noise, b""
            if self.machine is not None:
                self.machine.sent(packet)
            self.slip_client.sendall(noise + slip_encode(packet))
        return "server_add: done\r\n"

    def accept_slip(self, server: socket.socket) -> None:
        client, _ = server.accept()
        self.slip_client = client
        decoder = SlipDecoder()
        while data := client.recv(4096):
            for frame in decoder.feed(data):
                try:
                    datagram = parse_udp(parse_ipv4(frame))
                except PacketError as e:
                    self.console_note(f"[net] dropped a frame: {e}")
                    continue
                self.console_note(f"[net] udp from {datagram.src}:{datagram.src_port}: {datagram.payload.decode()}")

    def console_note(self, text: str) -> None:
        if self.uart_client is not None:
            self.uart_client.sendall(f"\r\n{text}\r\n".encode())

    def boot(self) -> None:
        while self.uart_client is None:  # the harness connects before start; allow for the race
            time.sleep(0.01)
        if os.environ.get("FAKE_RENODE_WARNINGS"):
            self.run_away(int(os.environ["FAKE_RENODE_WARNINGS"]))
            return
        if os.environ.get("FAKE_RENODE_SILENT_UART"):
            return
        self.uart_client.sendall(b"*** Booting embServe reference firmware v0.1.0 ***\r\nuart:~$ ")

    def run_away(self, size: int) -> None:
        """A firmware for another board: the model warns about every access, the console stays silent."""
        written, n = 0, 0
        while written < size:
            n += 1
            line = (f"12:00:01.{n % 10000:04d} [WARNING] sysbus: [cpu: 0x{n:X}] ReadDoubleWord from non existing"
                    f" peripheral at 0x{0x50000000 + n:X}.\n")
            sys.stdout.write(line)
            written += len(line)
        sys.stdout.write("12:00:02.0000 [WARNING] cpu: CPU abort detected, halting.\n")
        sys.stdout.flush()

    # -- the monitor side ----------------------------------------------------------

    def serve_monitor(self, port: int) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)
        print(f"12:00:00.0000 [INFO] Monitor available in telnet mode on port {port}", flush=True)
        while not self.quit.is_set():
            client, _ = server.accept()
            try:
                self.converse(client)
            except OSError:
                pass  # the harness's readiness probe connects and hangs up at once, as a client may
            finally:
                client.close()

    def converse(self, client: socket.socket) -> None:
        client.sendall(TELNET_HELLO + b"Renode, version 1.16.1.0 (fake)\r\n\r\n" + self.prompt.encode())
        buffer = b""
        while not self.quit.is_set():
            data = client.recv(4096)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode().strip()
                client.sendall(line.encode() + b"\r\n")  # echo, as the line editor does
                out = self.execute(line)
                if self.quit.is_set():
                    return
                text = (out.replace("\n", "\r\n") + "\r\n") if out else ""
                client.sendall(text.encode() + self.prompt.encode())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--disable-xwt", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid-file")
    args = parser.parse_args()
    if not args.disable_xwt:
        print("fake renode: the harness must run headless (--disable-xwt)", file=sys.stderr)
        return 2
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(str(os.getpid()))
    renode = FakeRenode(os.environ.get("FAKE_RENODE_LOG"))
    renode.record(f"HOME={os.environ.get('HOME')} TMPDIR={os.environ.get('TMPDIR')}")
    renode.serve_monitor(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
