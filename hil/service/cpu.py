"""Cortex-M4 executor for udynlink modules, on the unicorn emulator.

One :class:`Machine` (one unicorn instance, about 1 MB of host memory) holds
the images of many services, each in its own part of the 32-bit address
space with unmapped guard pages around every region; a :class:`MachinePool`
spreads node runtimes over a few machines. Guard pages and unmapped space
catch overruns and wild pointers; a wild pointer that happens to land in
another service's RAM on the same machine is not caught (nor is it on the
real, MPU-less device). A node that needs more can own its machine. A service runs in
*slices*: :meth:`Machine.call` starts a function, :meth:`Machine.resume`
continues one that was suspended, and both return an :class:`Exit` saying
whether the code returned, suspended itself (a host call asked for it) or
faulted. A slice that runs more than its instruction budget is stopped as a
runaway (unicorn's ``count``, enforced in C at no measurable cost).

Fixed layout:

* page 0 is readable (not executable, so a call through NULL faults) and
  holds at 0x28 the Thumb address of the LOT lookup routine that every
  export wrapper calls with its own PC in r0;
* page 1 holds host-call trampolines (``bx lr``); executing one calls
  :meth:`Guest.host_call` of the running guest, which returns r0. Returning
  to :data:`RETURN_ADDRESS` ends a call.

Host calls may raise :class:`GuestError` to fault the guest (bad pointer,
forbidden call) with a precise message.
"""

from __future__ import annotations

import bisect
import ctypes
import enum
import struct
import time
from dataclasses import dataclass
from typing import Protocol

from unicorn import (
    UC_ARCH_ARM,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_INVALID,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_MCLASS,
    UC_MODE_THUMB,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import arm_const
from unicorn.arm_const import (
    UC_ARM_REG_LR,
    UC_ARM_REG_PC,
    UC_ARM_REG_R0,
    UC_ARM_REG_R1,
    UC_ARM_REG_R2,
    UC_ARM_REG_R3,
    UC_ARM_REG_SP,
    UC_CPU_ARM_CORTEX_M4,
)

PAGE = 0x1000
LOOKUP_POINTER = 0x28
TRAMPOLINES = 0x1000
RETURN_ADDRESS = TRAMPOLINES  # returning here ends a call
LOOKUP_ADDRESS = TRAMPOLINES + 4
_FIRST_HOST_SLOT = TRAMPOLINES + 8
_IMAGE_AREA = (0x0010_0000, 0xE000_0000)  # below the Cortex-M system region
_BX_LR = b"\x70\x47\x00\xbf"  # bx lr; nop
_TCG_BUFFER = 4 << 20  # the default 1 GB costs ~2 MB more RSS per instance; ~30 kB of translations per service
NODES_PER_MACHINE = 64
ARG_REGS = (UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, UC_ARM_REG_R3)
_DUMP_REGISTERS = tuple(
    (name, getattr(arm_const, f"UC_ARM_REG_{name.upper()}"))
    for name in (*(f"r{i}" for i in range(13)), "sp", "lr", "pc", "xpsr")
)
_ACCESS = {
    UC_MEM_READ_UNMAPPED: ("read", "unmapped"),
    UC_MEM_WRITE_UNMAPPED: ("write", "unmapped"),
    UC_MEM_FETCH_UNMAPPED: ("instruction fetch", "unmapped"),
    UC_MEM_READ_PROT: ("read", "unreadable"),
    UC_MEM_WRITE_PROT: ("write", "read-only"),
    UC_MEM_FETCH_PROT: ("instruction fetch", "non-executable"),
}
_MEMORY_ERRORS = {
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_WRITE_PROT,
    UC_ERR_FETCH_PROT,
}


class GuestError(Exception):
    """Raised by a host call to fault the calling guest."""


class Guest(Protocol):
    label: str  # for fault messages, e.g. "temperature_sensor"

    def host_call(self, name: str, machine: Machine) -> int:
        """Serve the import ``name``; arguments are in r0-r3. Returns r0."""
        ...


class Debugger(Protocol):
    def before_slice(self) -> None: ...
    def image_mapped(self, image: Image) -> None: ...


class ExitReason(enum.Enum):
    RETURNED = "returned"
    SUSPENDED = "suspended"
    FAULT = "fault"


@dataclass
class Exit:
    reason: ExitReason
    host_seconds: float  # host time the slice took
    value: int = 0  # r0 when the call returned
    fault: str = ""
    context: object | None = None  # unicorn context to resume from when suspended
    resume_pc: int = 0
    sp: int = 0  # stack pointer of the suspended code
    pc: int = 0  # where a fault happened
    registers: dict[str, int] | None = None  # the register dump of a fault


@dataclass
class Image:
    """Where one module lives: code, RAM (LOT + data + bss) and stack, each with guard pages."""

    owner: Guest
    reservation: tuple[int, int]  # (start, size) of address space, guards included
    code_base: int
    code_size: int
    ram_base: int
    ram_size: int
    stack_base: int
    stack_top: int

    def region_of(self, address: int) -> str | None:
        if self.code_base <= address < self.code_base + _pages(self.code_size):
            return f"code+{address - self.code_base:#x}"
        if self.ram_base <= address < self.ram_base + _pages(self.ram_size):
            return f"RAM+{address - self.ram_base:#x}"
        if self.stack_base <= address < self.stack_top:
            return f"stack (top-{self.stack_top - address:#x})"
        if self.stack_base - PAGE <= address < self.stack_base:
            return "guard page below the stack"
        return None


class _Registers:
    """32-bit register access straight through the C API.

    The binding's ``Uc.reg_read`` costs ~5 us per call in dispatch; a host call
    reads several registers, so this goes to ``uc_reg_read`` directly (~1 us)
    and falls back to the public API if the binding's internals change.
    """

    def __init__(self, uc: Uc):
        self._buf = ctypes.c_uint32()
        self._ref = ctypes.byref(self._buf)
        try:
            from unicorn.unicorn_py3 import unicorn as binding

            self._c_read = binding.uclib.uc_reg_read
            self._c_write = binding.uclib.uc_reg_write
            self._handle = uc._uch
        except (ImportError, AttributeError):
            self.read, self.write = uc.reg_read, uc.reg_write  # type: ignore[method-assign]

    def read(self, reg: int) -> int:
        self._c_read(self._handle, reg, self._ref)
        return self._buf.value

    def write(self, reg: int, value: int) -> None:
        self._buf.value = value & 0xFFFFFFFF
        self._c_write(self._handle, reg, self._ref)


def _pages(size: int) -> int:
    return max(PAGE, (size + PAGE - 1) // PAGE * PAGE)


class Machine:
    def __init__(self, tcg_buffer_size: int = _TCG_BUFFER) -> None:
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
        uc.ctl_set_tcg_buffer_size(tcg_buffer_size)
        uc.mem_map(0, PAGE, UC_PROT_READ)
        uc.mem_write(LOOKUP_POINTER, struct.pack("<I", LOOKUP_ADDRESS | 1))
        uc.mem_map(TRAMPOLINES, PAGE, UC_PROT_READ | UC_PROT_EXEC)
        uc.mem_write(TRAMPOLINES, _BX_LR * (PAGE // 4))
        uc.hook_add(UC_HOOK_CODE, self._on_trampoline, begin=TRAMPOLINES, end=TRAMPOLINES + PAGE - 1)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_bad_access)
        uc.hook_add(UC_HOOK_INTR, self._on_exception)
        self.uc = uc
        self.regs = _Registers(uc)
        self.tenants = 0  # node runtimes placed here by a MachinePool
        self._host_names: list[str] = []
        self._host_addresses: dict[str, int] = {}
        self._images: list[Image] = []  # sorted by address, for bisect
        self._image_starts: list[int] = []
        self._free: list[tuple[int, int]] = [(_IMAGE_AREA[0], _IMAGE_AREA[1] - _IMAGE_AREA[0])]
        self._current: Guest | None = None
        self._stop: ExitReason | None = None
        self._fault = ""
        self._bad_access: tuple[int, int, int] | None = None
        self._suspend_value = 0
        self._resume_pc = 0
        #: a debugger attached to this CPU (:class:`hil.service.gdbserver.GdbServer`), told of slices and images
        self.debugger: Debugger | None = None

    # -- address space ---------------------------------------------------------------

    def host_address(self, name: str) -> int:
        """Thumb address of the trampoline for import ``name`` (allocated on first use)."""
        if name not in self._host_addresses:
            address = _FIRST_HOST_SLOT + 4 * len(self._host_names)
            if address >= TRAMPOLINES + PAGE:
                raise RuntimeError("no room for more host functions")
            self._host_names.append(name)
            self._host_addresses[name] = address | 1
        return self._host_addresses[name]

    def map_image(self, owner: Guest, code: bytes, ram_size: int, stack_size: int) -> Image:
        code_span, ram_span, stack_span = _pages(len(code)), _pages(ram_size), _pages(stack_size)
        size = PAGE + code_span + PAGE + ram_span + PAGE + stack_span + PAGE
        start = self._reserve(size, owner.label)
        code_base = start + PAGE
        ram_base = code_base + code_span + PAGE
        stack_base = ram_base + ram_span + PAGE
        self.uc.mem_map(code_base, code_span, UC_PROT_READ | UC_PROT_EXEC)
        self.uc.mem_map(ram_base, ram_span, UC_PROT_READ | UC_PROT_WRITE)
        self.uc.mem_map(stack_base, stack_span, UC_PROT_READ | UC_PROT_WRITE)
        self.uc.mem_write(code_base, bytes(code))
        stack_top = stack_base + stack_span
        image = Image(owner, (start, size), code_base, len(code), ram_base, ram_size, stack_base, stack_top)
        at = bisect.bisect(self._image_starts, start)
        self._image_starts.insert(at, start)
        self._images.insert(at, image)
        if self.debugger is not None:
            self.debugger.image_mapped(image)
        return image

    @property
    def images(self) -> list[Image]:
        return list(self._images)

    def unmap_image(self, image: Image) -> None:
        if self.image_at(image.reservation[0]) is not image:
            return
        at = self._images.index(image)
        del self._images[at], self._image_starts[at]
        for base, size in (
            (image.code_base, _pages(image.code_size)),
            (image.ram_base, _pages(image.ram_size)),
            (image.stack_base, image.stack_top - image.stack_base),
        ):
            self.uc.mem_unmap(base, size)
        # the address range will hold other code later: drop translations and counts for it
        self.uc.ctl_remove_cache(image.code_base, image.code_base + _pages(image.code_size))
        self._release(*image.reservation)

    def _reserve(self, size: int, label: str) -> int:
        for i, (start, length) in enumerate(self._free):
            if length >= size:
                self._free[i] = (start + size, length - size)
                return start
        raise MemoryError(f"no address space left for {label} ({size} bytes)")

    def _release(self, start: int, size: int) -> None:
        self._free.append((start, size))
        self._free.sort()
        merged: list[tuple[int, int]] = []
        for s, n in self._free:
            if merged and merged[-1][0] + merged[-1][1] == s:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            elif n:
                merged.append((s, n))
        self._free = merged

    def image_at(self, address: int) -> Image | None:
        at = bisect.bisect(self._image_starts, address) - 1
        if at < 0:
            return None
        image = self._images[at]
        start, size = image.reservation
        return image if address < start + size else None

    def describe(self, address: int) -> str:
        """Where an address points, for fault messages: "code+0x1a", "RAM+0x8 of other_service", ..."""
        if address < PAGE:
            return "page 0: NULL pointer?"
        if TRAMPOLINES <= address < TRAMPOLINES + PAGE:
            return "host-call trampolines"
        image = self.image_at(address)
        region = image.region_of(address) if image is not None else None
        if image is None or region is None:
            return "unmapped"
        return region if image.owner is self._current else f"{region} of {image.owner.label}"

    # -- guest memory, for host calls ------------------------------------------------

    def read(self, address: int, size: int, what: str = "memory") -> bytes:
        try:
            return bytes(self.uc.mem_read(address, size))
        except UcError:
            where = self.describe(address)
            raise GuestError(f"bad pointer: {what} at {address:#x} ({where}) is not readable") from None

    def write(self, address: int, data: bytes, what: str = "memory") -> None:
        """Write for the running guest, into its own RAM or stack only."""
        image = self.image_at(address)
        writable = image is not None and image.owner is self._current and (
            image.ram_base <= address and address + len(data) <= image.ram_base + _pages(image.ram_size)
            or image.stack_base <= address and address + len(data) <= image.stack_top
        )
        if not writable:
            raise GuestError(f"bad pointer: {what} at {address:#x} ({self.describe(address)}) is not writable")
        self.uc.mem_write(address, bytes(data))

    def read_u32(self, address: int, what: str = "word") -> int:
        return struct.unpack("<I", self.read(address, 4, what))[0]

    def write_u32(self, address: int, value: int, what: str = "word") -> None:
        self.write(address, struct.pack("<I", value & 0xFFFFFFFF), what)

    def read_cstring(self, address: int, limit: int = 1024, what: str = "string") -> str:
        out = bytearray()
        while len(out) < limit:
            at = address + len(out)
            chunk = self.read(at, min(64, PAGE - at % PAGE, limit - len(out)), what)
            nul = chunk.find(0)
            if nul >= 0:
                return (out + chunk[:nul]).decode("latin-1")
            out += chunk
        raise GuestError(f"bad pointer: {what} at {address:#x} has no NUL within {limit} bytes")

    def arg(self, index: int) -> int:
        return self.regs.read(ARG_REGS[index])

    # -- running ---------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._current is not None

    def call(self, guest: Guest, entry: int, args: tuple[int, ...], sp: int, budget: int) -> Exit:
        """Run ``entry(*args)`` on stack ``sp`` until it returns, suspends or faults."""
        self._check_idle(guest)
        for reg, value in zip(ARG_REGS, args):
            self.regs.write(reg, value & 0xFFFFFFFF)
        self.regs.write(UC_ARM_REG_SP, sp)
        self.regs.write(UC_ARM_REG_LR, RETURN_ADDRESS | 1)
        return self._run(guest, entry, budget)

    def resume(self, guest: Guest, context: object, resume_pc: int, budget: int) -> Exit:
        self._check_idle(guest)
        self.uc.context_restore(context)
        return self._run(guest, resume_pc, budget)

    def suspend(self, value: int = 0) -> None:
        """From a host call: stop the guest; it resumes after the call with r0 = ``value``."""
        self._stop = ExitReason.SUSPENDED
        self._suspend_value = value
        self._resume_pc = self.regs.read(UC_ARM_REG_LR)
        self.uc.emu_stop()

    def _check_idle(self, guest: Guest) -> None:
        if self._current is not None:
            raise RuntimeError(f"cannot run {guest.label}: the machine is running {self._current.label}")

    def _run(self, guest: Guest, begin: int, budget: int) -> Exit:
        self._current = guest
        self._stop = None
        self._fault = ""
        self._bad_access = None
        if self.debugger is not None:
            self.debugger.before_slice()
        started = time.perf_counter()
        try:
            return self._emulate(begin, budget, started)
        finally:
            self._current = None

    def _emulate(self, begin: int, budget: int, started: float) -> Exit:
        try:
            # count= is enforced in C; a Python block hook would double the cost of a slice
            self.uc.emu_start(begin | 1, RETURN_ADDRESS, count=budget)
        except UcError as exc:
            if self._stop is not ExitReason.FAULT:
                self._stop, self._fault = ExitReason.FAULT, self._explain(exc)
        spent = time.perf_counter() - started
        pc = self.regs.read(UC_ARM_REG_PC)
        if self._stop is ExitReason.FAULT:
            return Exit(ExitReason.FAULT, spent, fault=self._fault, pc=self._fault_pc(pc), registers=self.register_dump())
        if self._stop is ExitReason.SUSPENDED:
            self.regs.write(UC_ARM_REG_R0, self._suspend_value)
            return Exit(
                ExitReason.SUSPENDED,
                spent,
                context=self.uc.context_save(),
                resume_pc=self._resume_pc,
                sp=self.regs.read(UC_ARM_REG_SP),
            )
        if pc & ~1 == RETURN_ADDRESS:
            return Exit(ExitReason.RETURNED, spent, value=self.regs.read(UC_ARM_REG_R0))
        return Exit(
            ExitReason.FAULT,
            spent,
            pc=pc,
            registers=self.register_dump(),
            fault=f"runaway: {budget} instructions without sleeping or returning (the budget of one slice), "
            f"stopped at PC={self._where(pc)}",
        )

    def register_dump(self) -> dict[str, int]:
        """r0-r12, sp, lr, pc and xpsr as they are now."""
        return {name: self.regs.read(reg) for name, reg in _DUMP_REGISTERS}

    def _fault_pc(self, pc: int) -> int:
        """The faulting instruction: a host call that faulted its guest points at the caller."""
        if TRAMPOLINES <= pc < TRAMPOLINES + PAGE:
            return (self.regs.read(UC_ARM_REG_LR) & ~1) - 2  # the call: modules call out with BLX rN (-mlong-calls)
        return pc

    def _where(self, pc: int) -> str:
        return f"{pc:#010x} ({self.describe(pc)})"

    def _explain(self, exc: UcError) -> str:
        pc = self.regs.read(UC_ARM_REG_PC)
        if exc.errno in _MEMORY_ERRORS and self._bad_access is not None:
            access, address, size = self._bad_access
            verb, kind = _ACCESS.get(access, ("access", "invalid"))
            where = self.describe(address)
            what = "stack overflow" if where.startswith("guard page below the stack") else "bad memory access"
            place = "" if where == "unmapped" else f" ({where})"
            return (
                f"{what}: {verb} of {size} bytes at {kind} address {address:#010x}{place} "
                f"by the instruction at PC={self._where(pc)}"
            )
        if exc.errno == UC_ERR_INSN_INVALID:
            try:
                halfword = struct.unpack("<H", self.read(pc & ~1, 2))[0]
                wide = halfword >> 11 in (0x1D, 0x1E, 0x1F)
                encoding = self.read(pc & ~1, 4 if wide else 2)
                raw = "0x" + "".join(f"{h:04x}" for h in struct.unpack(f"<{len(encoding) // 2}H", encoding))
            except GuestError:
                raw = "unreadable"
            return f"invalid instruction {raw} at PC={self._where(pc)}"
        return f"CPU error at PC={self._where(pc)}: {exc}"

    # -- hooks (they must not raise: unicorn would lose the exception) --------------

    def _on_trampoline(self, uc: Uc, address: int, size: int, _: object) -> None:
        if self._stop is not None or address == RETURN_ADDRESS:
            return
        index = (address - _FIRST_HOST_SLOT) // 4
        name = "LOT lookup" if address == LOOKUP_ADDRESS else self._host_name(index)
        try:
            if address == LOOKUP_ADDRESS:
                result = self._lookup_lot(self.regs.read(UC_ARM_REG_R0))
            elif self._current is None or name is None:
                raise GuestError(f"call to an unassigned host-call slot at {address:#x}")
            else:
                result = self._current.host_call(name, self)
            if self._stop is ExitReason.SUSPENDED:
                self._suspend_value = result & 0xFFFFFFFF
            else:
                self.regs.write(UC_ARM_REG_R0, result & 0xFFFFFFFF)
        except GuestError as exc:
            caller = self._where(self.regs.read(UC_ARM_REG_LR) & ~1)
            self._halt_fault(f"{name or 'host call'}(): {exc}; called from PC={caller}")
        except Exception as exc:  # noqa: BLE001 - a host-side bug must not take the emulator down
            self._halt_fault(f"{name or 'host call'}(): host error {type(exc).__name__}: {exc}")

    def _host_name(self, index: int) -> str | None:
        return self._host_names[index] if 0 <= index < len(self._host_names) else None

    def _lookup_lot(self, pc: int) -> int:
        image = self.image_at(pc)
        if image is None or not image.code_base <= pc < image.code_base + image.code_size + 4:
            raise GuestError(f"LOT lookup for PC {pc:#x}, which is in no loaded module")
        return image.ram_base

    def _on_bad_access(self, uc: Uc, access: int, address: int, size: int, value: int, _: object) -> bool:
        self._bad_access = (access, address, size)
        return False

    def _on_exception(self, uc: Uc, intno: int, _: object) -> None:
        pc = self.regs.read(UC_ARM_REG_PC)
        kind = {2: "svc (supervisor call)", 7: "bkpt (breakpoint)"}.get(intno, f"number {intno}")
        self._halt_fault(f"unexpected CPU exception: {kind} at PC={self._where(pc)}")

    def _halt_fault(self, message: str) -> None:
        self._stop, self._fault = ExitReason.FAULT, message
        self.uc.emu_stop()


class MachinePool:
    """Places node runtimes on machines, at most ``per_machine`` on each.

    Measured with 1000 nodes running the temperature service: one machine for
    all costs ~400 us per loop iteration (the emulator's TLB and translation
    caches thrash), one per node ~175 us but 1 GB of RSS; 64-100 per machine
    ~220 us for ~50 MB.
    """

    def __init__(self, per_machine: int = NODES_PER_MACHINE, tcg_buffer_size: int = _TCG_BUFFER):
        self.per_machine = per_machine
        self.tcg_buffer_size = tcg_buffer_size
        self.machines: list[Machine] = []

    def acquire(self) -> Machine:
        machine = min(self.machines, key=lambda m: m.tenants, default=None)
        if machine is None or machine.tenants >= self.per_machine:
            machine = Machine(self.tcg_buffer_size)
            self.machines.append(machine)
        machine.tenants += 1
        return machine

    def release(self, machine: Machine) -> None:
        machine.tenants = max(0, machine.tenants - 1)


DEFAULT_POOL = MachinePool()
