"""A fake ``renode`` executable for the Renode target's unit tests (Renode itself is not installable here).

Run as ``python fake_renode.py --disable-xwt --plain --port N --pid-file F``.
It behaves as the measured Renode 1.16.1 does where the target depends on it
(/work/shared/docs/renode.md): it announces its monitor on stdout, opens the
monitor with telnet option bytes, echoes, colours its prompt ``(monitor)`` /
``(<machine>)``, reports bad commands in text (``There was an error executing
command ...``), serves a raw-byte socket terminal, and on ``start`` boots a
tiny shell on the connected UART. Every monitor command is appended to
``$FAKE_RENODE_LOG`` so a test can check the conversation.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import threading
import time

RED, YELLOW, RESET = "\x1b[31;1m", "\x1b[33;1m", "\x1b[0m"
TELNET_HELLO = bytes([255, 253, 0, 255, 251, 1, 255, 251, 3, 255, 252, 34])


class Machine:
    def __init__(self, name: str):
        self.name = name
        self.peripherals: set[str] = set()
        self.elf: str | None = None
        self.terminals: dict[str, socket.socket] = {}
        self.connected: dict[str, str] = {}  # uart -> terminal
        self.started = False
        self.virtual_time = 0.0


class FakeRenode:
    def __init__(self, log_path: str | None):
        self.machine: Machine | None = None
        self.log_path = log_path
        self.quit = threading.Event()
        self.uart_client: socket.socket | None = None

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
        if m is None:
            return f"{RED}There was an error executing command '{line}'{RESET}\nNo machine selected."
        if m_ := re.fullmatch(r"machine LoadPlatformDescription @(\S+)", line):
            path = m_.group(1)
            if path.startswith("platforms/"):
                m.peripherals |= {"sysbus.usart2", "sysbus.uart0", "sysbus.ethernet"}
                return ""
            if not os.path.isfile(path):
                return f"{RED}There was an error executing command '{line}'{RESET}\nCould not find file '{path}'"
            text = open(path).read()
            m.peripherals |= {f"sysbus.{name}" for name in re.findall(r"^(\w+):", text, re.M)}
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
            threading.Thread(target=self.accept_uart, args=(server,), daemon=True).start()
            return ""
        if m_ := re.fullmatch(r"connector Connect (\S+) (\w+)", line):
            uart, term = m_.groups()
            if uart == "host.tap" or term == "switch":
                return ""
            if uart not in m.peripherals:
                return f"{RED}There was an error executing command '{line}'{RESET}\nCould not find peripheral '{uart}'"
            m.connected[uart] = term
            return ""
        if line.startswith(("emulation CreateSwitch", "emulation CreateTap")):
            return ""
        if line == "start":
            m.started = True
            threading.Thread(target=self.boot, daemon=True).start()
            return "Starting emulation..."
        if line == "pause":
            m.started = False
            return ""
        if m_ := re.fullmatch(r'emulation RunFor "(\d+):(\d+):(\d+(?:\.\d+)?)"', line):
            if m.started:
                return (f"{RED}There was an error executing command '{line}'{RESET}\n"
                        "This action is not available when emulation is already started")
            h, mi, s = m_.groups()
            m.virtual_time += int(h) * 3600 + int(mi) * 60 + float(s)
            return ""
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
                elif text:
                    reply += f"{text.split()[0]}: done\r\n"
                client.sendall((reply + "uart:~$ ").encode())

    def boot(self) -> None:
        while self.uart_client is None:  # the harness connects before start; allow for the race
            time.sleep(0.01)
        if os.environ.get("FAKE_RENODE_SILENT_UART"):
            return
        self.uart_client.sendall(b"*** Booting embServe reference firmware v0.1.0 ***\r\nuart:~$ ")

    # -- the monitor side ----------------------------------------------------------

    def serve_monitor(self, port: int) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)
        print(f"12:00:00.0000 [INFO] Monitor available in telnet mode on port {port}", flush=True)
        while not self.quit.is_set():
            client, _ = server.accept()
            client.sendall(TELNET_HELLO + b"Renode, version 1.16.1.0 (fake)\r\n\r\n" + self.prompt.encode())
            buffer = b""
            while not self.quit.is_set():
                data = client.recv(4096)
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.decode().strip()
                    client.sendall(line.encode() + b"\r\n")  # echo, as the line editor does
                    out = self.execute(line)
                    if self.quit.is_set():
                        client.close()
                        return
                    text = (out.replace("\n", "\r\n") + "\r\n") if out else ""
                    client.sendall(text.encode() + self.prompt.encode())
            client.close()


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
    renode.record(f"HOME={os.environ.get('HOME')}")
    renode.serve_monitor(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
