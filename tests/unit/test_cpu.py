"""The Cortex-M4 machine: calls, host calls, suspension, faults and address-space reuse.

Code snippets are Thumb-2 machine code assembled from the source shown next
to them (arm-none-eabi-as), so these tests need no toolchain.
"""

from __future__ import annotations

import pytest

from hil.service.cpu import (
    LOOKUP_ADDRESS,
    LOOKUP_POINTER,
    ExitReason,
    GuestError,
    Machine,
)

ADD = bytes.fromhex("40187047")  # adds r0, r0, r1; bx lr
CALL_R2 = bytes.fromhex("10b59047013010bd")  # push {r4, lr}; blx r2; adds r0, #1; pop {r4, pc}
LOAD = bytes.fromhex("00687047")  # ldr r0, [r0]; bx lr
STORE = bytes.fromhex("01607047")  # str r1, [r0]; bx lr
SPIN = bytes.fromhex("fee700bf")  # b .
UDF = bytes.fromhex("00bf07de")  # nop; udf #7
SVC = bytes.fromhex("03df7047")  # svc #3; bx lr
CALL_R0 = bytes.fromhex("10b5804710bd00bf")  # push {r4, lr}; blx r0; pop {r4, pc}
# push {r4, lr}; mov.w r1, #0x28; ldr r1, [r1]; mov r0, pc; blx r1; pop {r4, pc}
LOOKUP = bytes.fromhex("10b54ff0280109687846884710bd00bf")
BUDGET = 10_000


class FakeGuest:
    """A guest whose host calls are plain Python functions (a test fake)."""

    def __init__(self, label: str, **functions):
        self.label = label
        self.functions = functions
        self.calls: list[tuple[str, int, int]] = []

    def host_call(self, name: str, machine: Machine) -> int:
        self.calls.append((name, machine.arg(0), machine.arg(1)))
        return self.functions[name](machine)


@pytest.fixture
def machine() -> Machine:
    return Machine()


def load(machine: Machine, code: bytes, label: str = "guest", **functions):
    guest = FakeGuest(label, **functions)
    image = machine.map_image(guest, code, ram_size=64, stack_size=1024)
    return guest, image


def test_page0_holds_the_lookup_pointer_and_is_read_only(machine):
    guest, image = load(machine, LOAD)
    read = machine.call(guest, image.code_base, (LOOKUP_POINTER,), image.stack_top, BUDGET)
    assert (read.reason, read.value) == (ExitReason.RETURNED, LOOKUP_ADDRESS | 1)
    writer, writer_image = load(machine, STORE, "writer")
    write = machine.call(writer, writer_image.code_base, (LOOKUP_POINTER, 0), writer_image.stack_top, BUDGET)
    assert write.reason is ExitReason.FAULT
    assert "write of 4 bytes at read-only address 0x00000028 (page 0: NULL pointer?)" in write.fault


def test_call_returns_r0(machine):
    guest, image = load(machine, ADD)
    exit = machine.call(guest, image.code_base, (40, 2), image.stack_top, BUDGET)
    assert (exit.reason, exit.value) == (ExitReason.RETURNED, 42)


def test_lookup_routine_returns_the_lot_base_of_the_calling_module(machine):
    _, first = load(machine, ADD, "first")
    guest, image = load(machine, LOOKUP, "second")
    exit = machine.call(guest, image.code_base, (), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.RETURNED
    assert exit.value == image.ram_base != first.ram_base


def test_host_call_gets_arguments_and_its_result_lands_in_r0(machine):
    host = machine.host_address("twice")
    guest, image = load(machine, CALL_R2, twice=lambda m: 2 * m.arg(0))
    exit = machine.call(guest, image.code_base, (20, 7, host), image.stack_top, BUDGET)
    assert (exit.reason, exit.value) == (ExitReason.RETURNED, 41)
    assert guest.calls == [("twice", 20, 7)]


def test_suspend_and_resume_continue_after_the_host_call(machine):
    host = machine.host_address("nap")

    def nap(m: Machine) -> int:
        m.suspend()
        return 99  # becomes r0 when the guest resumes

    guest, image = load(machine, CALL_R2, nap=nap)
    exit = machine.call(guest, image.code_base, (0, 0, host), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.SUSPENDED
    assert image.stack_base < exit.sp < image.stack_top
    # another guest runs in between; the suspended one keeps its registers
    other, other_image = load(machine, ADD, "other")
    assert machine.call(other, other_image.code_base, (1, 1), other_image.stack_top, BUDGET).value == 2
    again = machine.resume(guest, exit.context, exit.resume_pc, BUDGET)
    assert (again.reason, again.value) == (ExitReason.RETURNED, 100)


def test_guest_error_from_a_host_call_faults_with_caller_pc(machine):
    host = machine.host_address("picky")

    def picky(m: Machine) -> int:
        raise GuestError("bad pointer 0x1")

    guest, image = load(machine, CALL_R2, picky=picky)
    exit = machine.call(guest, image.code_base, (0, 0, host), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.FAULT
    assert exit.fault.startswith("picky(): bad pointer 0x1; called from PC=")
    assert "(code+0x4)" in exit.fault  # the return address: the instruction after the blx


def test_unmapped_read_names_address_and_pc(machine):
    guest, image = load(machine, LOAD)
    exit = machine.call(guest, image.code_base, (0x5000_0000,), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.FAULT
    assert exit.fault == (
        f"bad memory access: read of 4 bytes at unmapped address 0x50000000 "
        f"by the instruction at PC={image.code_base:#010x} (code+0x0)"
    )


def test_write_to_code_is_refused(machine):
    guest, image = load(machine, STORE)
    exit = machine.call(guest, image.code_base, (image.code_base + 8, 1), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.FAULT
    assert f"write of 4 bytes at read-only address {image.code_base + 8:#010x} (code+0x8)" in exit.fault


def test_write_into_another_guests_guard_page_is_a_fault_naming_it(machine):
    _, other_image = load(machine, ADD, "neighbour")
    guest, image = load(machine, STORE)
    exit = machine.call(guest, image.code_base, (other_image.stack_base - 4, 1), image.stack_top, BUDGET)
    assert "stack overflow: write of 4 bytes" in exit.fault
    assert "guard page below the stack of neighbour" in exit.fault


def test_call_through_null_faults_on_instruction_fetch(machine):
    guest, image = load(machine, CALL_R0)
    exit = machine.call(guest, image.code_base, (1,), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.FAULT
    assert "instruction fetch of 2 bytes at non-executable address 0x00000000 (page 0: NULL pointer?)" in exit.fault


def test_invalid_instruction_shows_its_encoding(machine):
    guest, image = load(machine, UDF)
    exit = machine.call(guest, image.code_base, (), image.stack_top, BUDGET)
    assert exit.fault == f"invalid instruction 0xde07 at PC={image.code_base + 2:#010x} (code+0x2)"


def test_runaway_is_stopped_by_the_budget(machine):
    guest, image = load(machine, SPIN)
    exit = machine.call(guest, image.code_base, (), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.FAULT
    assert exit.fault.startswith(f"runaway: {BUDGET} instructions without sleeping or returning")
    assert f"PC={image.code_base:#010x} (code+0x0)" in exit.fault


def test_supervisor_call_is_a_fault(machine):
    guest, image = load(machine, SVC)
    exit = machine.call(guest, image.code_base, (), image.stack_top, BUDGET)
    assert exit.reason is ExitReason.FAULT
    assert exit.fault.startswith("unexpected CPU exception: svc (supervisor call) at PC=")


def test_machine_keeps_working_after_faults(machine):
    for code in (LOAD, UDF, SPIN, SVC):
        guest, image = load(machine, code, "faulty")
        assert machine.call(guest, image.code_base, (0x5000_0000,), image.stack_top, BUDGET).reason is ExitReason.FAULT
        machine.unmap_image(image)
    guest, image = load(machine, ADD)
    assert machine.call(guest, image.code_base, (2, 3), image.stack_top, BUDGET).value == 5


def test_unmapped_address_space_is_reused_with_fresh_translations(machine):
    guest, image = load(machine, ADD)
    assert machine.call(guest, image.code_base, (2, 3), image.stack_top, BUDGET).value == 5
    machine.unmap_image(image)
    # same size: lands at the same address; stale translated code must not run
    guest2, image2 = load(machine, bytes.fromhex("401a7047"))  # subs r0, r0, r1; bx lr
    assert image2.code_base == image.code_base
    assert machine.call(guest2, image2.code_base, (2, 3), image2.stack_top, BUDGET).value == (2 - 3) & 0xFFFFFFFF


def test_host_writes_are_limited_to_the_callers_own_memory(machine):
    other, other_image = load(machine, ADD, "other")
    host = machine.host_address("poke")
    guest, image = load(
        machine, CALL_R2, poke=lambda m: m.write(m.arg(0), b"\1\2\3\4", "poke target") or 0
    )
    ok = machine.call(guest, image.code_base, (image.ram_base, 0, host), image.stack_top, BUDGET)
    assert ok.reason is ExitReason.RETURNED
    assert bytes(machine.uc.mem_read(image.ram_base, 4)) == b"\1\2\3\4"
    bad = machine.call(guest, image.code_base, (other_image.ram_base, 0, host), image.stack_top, BUDGET)
    assert bad.reason is ExitReason.FAULT
    assert f"poke target at {other_image.ram_base:#x} (RAM+0x0 of other) is not writable" in bad.fault


def test_nested_run_is_refused(machine):
    host = machine.host_address("reenter")
    inner_guest, inner = load(machine, ADD, "inner")
    seen: list[str] = []

    def reenter(m: Machine) -> int:
        try:
            m.call(inner_guest, inner.code_base, (1, 1), inner.stack_top, BUDGET)
        except RuntimeError as exc:
            seen.append(str(exc))
        return 0

    guest, image = load(machine, CALL_R2, "outer", reenter=reenter)
    assert machine.call(guest, image.code_base, (0, 0, host), image.stack_top, BUDGET).reason is ExitReason.RETURNED
    assert seen == ["cannot run inner: the machine is running outer"]
