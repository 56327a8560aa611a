"""A bench's temperature stimulus for the reference firmware on QEMU: the tests' stand-in for ``chamber-cli set {value}``.

It changes the temperature under the firmware, not through its shell: it
connects to QEMU's gdbstub (``-gdb tcp:HOST:PORT``), which pauses the
machine, writes the value into the firmware's sensor table (the ``sensors``
symbol of the ELF; its first entry is the temperature sensor: name pointer,
SDK type, float value), and detaches, which lets the machine run on. The
firmware then reads the new value as it would read a real sensor.

usage: python qemu_gdb_stimulus.py HOST:PORT FIRMWARE.elf VALUE
"""

from __future__ import annotations

import socket
import struct
import sys

from elftools.elf.elffile import ELFFile

TIMEOUT = 5.0
SENSOR_ENTRY = struct.Struct("<IIf")  # const char *name; int sdk_type; float value


class GdbStubError(RuntimeError):
    pass


class GdbRemote:
    """The few GDB remote-protocol packets this needs: read memory, write memory, detach."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def request(self, payload: str) -> str:
        checksum = sum(payload.encode()) % 256
        self.sock.sendall(f"${payload}#{checksum:02x}".encode())
        while True:
            reply = self._packet()
            self.sock.sendall(b"+")
            # QEMU reports the stop it makes when a debugger attaches (e.g. 'T02thread:01;')
            # whenever it likes; none of the requests here is answered with one.
            if not reply.startswith(("T", "S")):
                break
        if reply.startswith("E"):
            raise GdbStubError(f"gdbstub answered {reply!r} to {payload[:40]!r}")
        return reply

    def _packet(self) -> str:
        while True:
            start = self.buffer.find(b"$")
            end = self.buffer.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buffer) >= end + 3:
                packet, self.buffer = self.buffer[start + 1 : end], self.buffer[end + 3 :]
                return packet.decode()
            chunk = self.sock.recv(4096)
            if not chunk:
                raise GdbStubError(f"gdbstub closed the connection; got {self.buffer!r}")
            self.buffer += chunk  # acks ('+') before the '$' are skipped with it

    def read(self, address: int, length: int) -> bytes:
        return bytes.fromhex(self.request(f"m{address:x},{length:x}"))

    def write(self, address: int, data: bytes) -> None:
        if self.request(f"M{address:x},{len(data):x}:{data.hex()}") != "OK":
            raise GdbStubError(f"writing {len(data)} bytes at {address:#x} was refused")


def sensor_table(elf_path: str) -> int:
    with open(elf_path, "rb") as f:
        symbols = ELFFile(f).get_section_by_name(".symtab")
        found = symbols.get_symbol_by_name("sensors") if symbols else None
        if not found:
            raise GdbStubError(f"{elf_path} has no 'sensors' symbol (is it the reference firmware, not stripped?)")
        return int(found[0]["st_value"])


def set_temperature(address: tuple[str, int], elf_path: str, value: float) -> None:
    table = sensor_table(elf_path)
    remote = GdbRemote(address)
    try:
        name_at, _, _ = SENSOR_ENTRY.unpack(remote.read(table, SENSOR_ENTRY.size))
        name = remote.read(name_at, 12)
        if name != b"temperature\0":
            raise GdbStubError(f"the first entry of 'sensors' at {table:#x} is {name!r}, not the temperature sensor")
        remote.write(table + 8, struct.pack("<f", value))
        remote.request("D")  # detach: the machine runs on
    finally:
        remote.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or ":" not in argv[0]:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    host, port = argv[0].rsplit(":", 1)
    try:
        set_temperature((host, int(port)), argv[1], float(argv[2]))
    except (OSError, GdbStubError, ValueError) as e:
        print(f"stimulus through QEMU's gdbstub at {argv[0]} failed: {e}", file=sys.stderr)
        return 1
    print(f"temperature set to {float(argv[2])} at {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
