"""A GDB server for the simulator's service CPU: GDB's remote serial protocol over a unicorn :class:`Machine`.

``gdb-multiarch -ex 'target remote 127.0.0.1:PORT'`` attaches to the
Cortex-M4 that runs a simulated node's services. Every service loaded on it
is reported as a *library* (``qXfer:libraries:read``) named by the ELF with
debug information that ``build-service`` kept for it (the symbol store),
with the address of each of its sections: GDB loads its symbols there, so
``break loop`` resolves as soon as the service is installed, and a
backtrace names its source file.

Threads: the server reads GDB's packets on a thread of its own; the CPU
runs on the event loop's thread, inside the runtime's slices. Everything
that touches the CPU (registers, memory, breakpoints) is handed to the loop's
thread. While GDB holds the CPU (a breakpoint, a step, an interrupt, a new
service), that thread waits in :meth:`GdbServer._hold`, serving GDB's
requests, and everything on the event loop waits with it, as a real board's
network stops with its CPU. Device time runs on meanwhile.

Supported: ``?``, ``g``/``G``, ``p``/``P``, ``m``/``M``, ``Z0``/``z0`` and
``Z1``/``z1`` (checked in a code hook installed on attach, so adding one
never needs retranslation), ``c``, ``s``, ``vCont`` with ``c`` and ``s``,
interrupt (Ctrl-C), ``D`` and ``k``; target description (M-profile) and the
library list through ``qXfer``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from unicorn import UC_HOOK_CODE, UcError

from . import symbols
from .cpu import _IMAGE_AREA, Image, Machine

log = logging.getLogger("hil.service.gdbserver")

REGISTERS = [*(f"r{i}" for i in range(13)), "sp", "lr", "pc", "xpsr"]
XPSR_REGNUM = 25  # GDB's number for xpsr in the M-profile feature
TARGET_XML = (
    '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0">'
    "<architecture>arm</architecture><osabi>none</osabi><feature name=\"org.gnu.gdb.arm.m-profile\">"
    + "".join(f'<reg name="r{i}" bitsize="32"/>' for i in range(13))
    + '<reg name="sp" bitsize="32" type="data_ptr"/><reg name="lr" bitsize="32"/>'
    '<reg name="pc" bitsize="32" type="code_ptr"/>'
    f'<reg name="xpsr" bitsize="32" regnum="{XPSR_REGNUM}"/></feature></target>'
)
SIGTRAP, SIGINT = 5, 2
REQUEST_TIMEOUT = 30.0
_RESUME = object()


class GdbServer:
    """See the module docs. ``async with GdbServer(machine, port=0) as server`` listens on loopback."""

    def __init__(self, machine: Machine, host: str = "127.0.0.1", port: int = 0,
                 elf_for: Callable[[Image], Path | None] | None = None):
        self.machine = machine
        self.host = host
        self.port = port
        self.elf_for = elf_for or _stored_elf
        self.attached = threading.Event()
        self.continued = threading.Event()  # the first continue after attaching
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._requests: queue.Queue = queue.Queue()
        self._breakpoints: set[int] = set()
        self._hook: int | None = None
        self._halted = False  # GDB holds the CPU
        self._holding = False  # the loop's thread waits in _hold()
        self._step = False
        self._interrupt = False
        self._libraries_changed = False
        self._closing = False

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> GdbServer:
        self._loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self.machine.debugger = self
        self._thread = threading.Thread(target=self._serve, name=f"gdbserver:{self.port}", daemon=True)
        self._thread.start()
        return self

    async def wait_for_debugger(self, timeout: float | None = None) -> None:
        """Until GDB has attached and let the CPU run (its first continue)."""
        await asyncio.wait_for(asyncio.to_thread(self.continued.wait), timeout)

    async def close(self) -> None:
        self._closing = True
        self.machine.debugger = None
        self._requests.put(_RESUME)  # a held CPU runs on
        for sock in (self._client, self._listener):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self.continued.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        if self._hook is not None:
            self.machine.uc.hook_del(self._hook)
            self._hook = None

    async def __aenter__(self) -> GdbServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- called by the machine, on the loop's thread ------------------------------------------

    def before_slice(self) -> None:
        if self._halted or self._interrupt:
            self._interrupt = False
            self._hold(SIGINT)

    def image_mapped(self, image: Image) -> None:
        self._libraries_changed = True
        if self.attached.is_set() and not self._halted and not self._closing:
            self._hold(SIGTRAP)  # GDB reads the library list, places pending breakpoints, continues

    def _on_code(self, uc: Any, address: int, size: int, _: object) -> None:
        if self._step or self._interrupt or address in self._breakpoints:
            signal = SIGINT if self._interrupt and not self._step and address not in self._breakpoints else SIGTRAP
            self._step = self._interrupt = False
            self._hold(signal)

    def _hold(self, signal: int) -> None:
        """Stop here (the loop's thread) and serve GDB until it resumes the CPU."""
        self._halted = self._holding = True
        self._send_stop(signal)
        try:
            while True:
                request = self._requests.get()
                if request is _RESUME:
                    break
                request()
        finally:
            self._holding = False
            self._halted = False

    def _drain(self) -> None:
        """Serve requests from the loop's thread when the CPU is not inside a slice."""
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request is not _RESUME:
                request()

    # -- the server thread --------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            try:
                self._session(client)
            except (OSError, ConnectionError) as e:
                log.info("GDB connection ended: %s", e)
            finally:
                self._detach()
                client.close()
                self._client = None

    def _session(self, client: socket.socket) -> None:
        buffer = b""
        while not self._closing:
            data = client.recv(4096)
            if not data:
                return
            buffer += data
            while buffer:
                if buffer[0:1] == b"\x03":
                    buffer = buffer[1:]
                    self._interrupt = True
                    continue
                if buffer[0:1] in (b"+", b"-"):
                    buffer = buffer[1:]
                    continue
                start = buffer.find(b"$")
                end = buffer.find(b"#", start)
                if start < 0:
                    buffer = b""
                    break
                if end < 0 or len(buffer) < end + 3:
                    break
                packet = buffer[start + 1 : end].decode("latin-1")
                buffer = buffer[end + 3 :]
                client.sendall(b"+")
                reply = self._handle(packet)
                if reply is not None:
                    self._send(reply)
                if packet in ("k",) or packet.startswith("D"):
                    return

    def _send(self, payload: str) -> None:
        data = payload.encode("latin-1")
        checksum = sum(data) & 0xFF
        with self._send_lock:
            if self._client is not None:
                self._client.sendall(b"$" + data + b"#" + f"{checksum:02x}".encode())

    def _send_stop(self, signal: int) -> None:
        library = "library:;" if self._libraries_changed else ""
        self._send(f"T{signal:02x}thread:1;{library}")

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the loop's thread and return what it returns."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed back to the server thread
                future.set_exception(e)

        self._requests.put(run)
        if not self._holding and self._loop is not None:
            self._loop.call_soon_threadsafe(self._drain)
        return future.result(REQUEST_TIMEOUT)

    def _resume(self, step: bool) -> None:
        self._step = step
        if self._holding:
            self._requests.put(_RESUME)
        else:
            self._halted = False
        self.continued.set()

    def _detach(self) -> None:
        self._breakpoints.clear()
        self.attached.clear()
        self._step = self._interrupt = False
        if self._halted or self._holding:
            self._resume(step=False)
        self.continued.set()

    # -- packets -------------------------------------------------------------------------------

    def _handle(self, packet: str) -> str | None:
        try:
            return self._dispatch(packet)
        except (UcError, ValueError, struct.error) as e:
            log.debug("GDB packet %r failed: %s", packet, e)
            return "E14"
        except concurrent.futures.TimeoutError:
            return "E05"

    def _dispatch(self, packet: str) -> str | None:
        head = packet[:1]
        if packet.startswith("qSupported"):
            return "PacketSize=4000;qXfer:features:read+;qXfer:libraries:read+;vContSupported+"
        if packet.startswith("qXfer:features:read:target.xml:"):
            return _chunk(TARGET_XML, packet.rsplit(":", 1)[1])
        if packet.startswith("qXfer:libraries:read::"):
            self._libraries_changed = False
            return _chunk(self._call(self._library_list), packet.rsplit(":", 1)[1])
        if packet == "?":
            self._attach()
            return f"T{SIGTRAP:02x}thread:1;"
        if packet in ("qAttached",):
            return "1"
        if packet == "qC":
            return "QC1"
        if packet == "qfThreadInfo":
            return "m1"
        if packet == "qsThreadInfo":
            return "l"
        if packet.startswith("H") or packet.startswith("T"):
            return "OK"
        if packet == "vCont?":
            return "vCont;c;C;s;S"
        if packet.startswith("vCont;"):
            action = packet[6:7]
            self._resume(step=action in ("s", "S"))
            return None
        if head == "c":
            self._resume(step=False)
            return None
        if head == "s":
            self._resume(step=True)
            return None
        if head == "g":
            return "".join(_hex32(v) for v in self._call(self._read_registers))
        if head == "G":
            values = [int.from_bytes(bytes.fromhex(packet[1 + 8 * i : 9 + 8 * i]), "little") for i in range(len(REGISTERS))]
            self._call(lambda: self._write_registers(values))
            return "OK"
        if head == "p":
            index = _register_index(int(packet[1:], 16))
            if index is None:
                return "E00"
            return _hex32(self._call(self._read_registers)[index])
        if head == "P":
            number, value = packet[1:].split("=")
            index = _register_index(int(number, 16))
            if index is None:
                return "E00"
            word = int.from_bytes(bytes.fromhex(value), "little")
            self._call(lambda: self._write_register(index, word))
            return "OK"
        if head == "m":
            address, length = (int(x, 16) for x in packet[1:].split(","))
            return self._call(lambda: bytes(self.machine.uc.mem_read(address, length))).hex()
        if head == "M":
            where, data = packet[1:].split(":")
            address = int(where.split(",")[0], 16)
            self._call(lambda: self.machine.uc.mem_write(address, bytes.fromhex(data)))
            return "OK"
        if head in ("Z", "z") and packet[1:2] in ("0", "1"):
            address = int(packet.split(",")[1], 16) & ~1
            (self._breakpoints.add if head == "Z" else self._breakpoints.discard)(address)
            return "OK"
        if head == "D":
            return "OK"
        if head == "k":
            return None
        return ""  # not supported: GDB falls back

    def _attach(self) -> None:
        if self.attached.is_set():
            return
        self._call(self._install_hook)
        self._halted = True  # the CPU stops before its next slice until GDB continues
        self.attached.set()

    # -- on the loop's thread -----------------------------------------------------------------

    def _install_hook(self) -> None:
        if self._hook is None:
            self._hook = self.machine.uc.hook_add(UC_HOOK_CODE, self._on_code, begin=_IMAGE_AREA[0], end=_IMAGE_AREA[1] - 1)
            self.machine.uc.ctl_remove_cache(_IMAGE_AREA[0], _IMAGE_AREA[1] - 1)

    def _read_registers(self) -> list[int]:
        dump = self.machine.register_dump()
        return [dump[name] for name in REGISTERS]

    def _write_registers(self, values: list[int]) -> None:
        for index, value in enumerate(values):
            self._write_register(index, value)

    def _write_register(self, index: int, value: int) -> None:
        from unicorn import arm_const

        self.machine.uc.reg_write(getattr(arm_const, f"UC_ARM_REG_{REGISTERS[index].upper()}"), value)

    def _library_list(self) -> str:
        entries = []
        for image in self.machine.images:
            elf = self.elf_for(image)
            if elf is None:
                continue
            sections = "".join(f'<section address="{a:#x}"/>' for a in section_addresses(elf, image))
            entries.append(f'<library name="{_xml_escape(str(elf))}">{sections}</library>')
        return '<library-list version="1.0">' + "".join(entries) + "</library-list>"


def section_addresses(elf: Path, image: Image) -> list[int]:
    """Where each allocated section of a service's ELF is in the machine, in the ELF's order.

    Code is linked at 0 and loaded at the image's code base; data and bss are
    linked at :data:`symbols.SERVICE_DATA_BASE` and loaded after the LOT.
    """
    lot_size = getattr(image.owner, "module", None)
    lot = lot_size.lot_size if lot_size is not None else 0
    data_base = image.ram_base + lot
    addresses = []
    with open(elf, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if not section["sh_flags"] & 0x2:  # SHF_ALLOC
                continue
            addr = section["sh_addr"]
            if addr >= symbols.SERVICE_DATA_BASE:
                addresses.append(data_base + addr - symbols.SERVICE_DATA_BASE)
            else:
                addresses.append(image.code_base + addr)
    return addresses


def _stored_elf(image: Image) -> Path | None:
    manifest = getattr(image.owner, "manifest", None)
    return symbols.service_elf_for(manifest.service) if manifest is not None else None


def _register_index(number: int) -> int | None:
    if 0 <= number < 16:
        return number
    return 16 if number == XPSR_REGNUM else None


def _hex32(value: int) -> str:
    return struct.pack("<I", value & 0xFFFFFFFF).hex()


def _chunk(text: str, window: str) -> str:
    offset, length = (int(x, 16) for x in window.split(","))
    part = text[offset : offset + length]
    return ("l" if offset + length >= len(text) else "m") + part


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")

