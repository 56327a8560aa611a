"""What each service costs a simulated node: instructions per slice and SDK calls, counted exactly.

Off unless asked for, and then nothing here runs: a :class:`ServiceRuntime`
made with ``meters=ServiceMeters()`` loads every service as a
:class:`MeteredService`; without it, services are plain
:class:`~hil.service.runtime.LoadedService` objects and the emulator has no
hook more than before.

Instructions are counted per translated block: a unicorn block hook over
the service's own code (its image's code range, so the host-call trampolines
and other services' code are not counted) adds the number of Thumb
instructions in the block, decoded once per block. A block runs to its end
unless the service faults in it (the count of a faulting slice may then be
a few instructions high), so the counts are exact for everything else. The
hook is a Python call per block executed: about ten per period of the
temperature service.

The records (:class:`hil.metrics.cost.ServiceCost`) are kept by service name in
:class:`ServiceMeters`, so they outlive an unload, a redeploy and, when the
node keeps its :class:`ServiceMeters`, a reboot.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from unicorn import UC_HOOK_BLOCK, Uc, UcError

from ..metrics.cost import PERIOD, ServiceCost
from .cpu import Exit, ExitReason
from .manifest import Manifest
from .runtime import LoadedService, ServiceRuntime
from .sdk_api import IMPORTS
from .udlm import Module

#: SDK imports as the records name them (see hil.metrics.cost)
CALL_NAMES = {
    "embserve_output_impl": "output",
    "embserve_sleep_impl": "sleep",
    "embserve_get_sensor_data_impl": "sensor_read",
    "embserve_get_sensor_impl": "get_sensor",
    "embserve_printf_impl": "printf",
}


def thumb_instructions(code: bytes) -> int:
    """Instructions in Thumb-2 code: a halfword whose top five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit one."""
    count = at = 0
    end = len(code) - 1
    while at < end:
        at += 4 if code[at + 1] >> 3 >= 0x1D else 2
        count += 1
    return count


class BlockCounter:
    """Instructions executed in ``[begin, begin + size)``, counted by a block hook; :meth:`close` removes it.

    The hook goes to ``uc_hook_add`` directly when the binding allows: the
    binding's own wrapper adds two Python calls to every block, a third of
    what counting costs (it falls back to ``Uc.hook_add`` if the binding's
    internals change).
    """

    def __init__(self, uc: Uc, begin: int, size: int):
        self._uc = uc
        self._raw: object | None = None
        self._handle: int | None = None
        self._on_block, self._read = self._counting(uc)
        end = begin + size - 1
        try:
            from unicorn.unicorn_py3 import unicorn as binding

            # Declared without the hook's last argument (user data, unused): a C caller's extra argument is
            # harmless under every calling convention unicorn runs on, and ctypes converts one value fewer.
            raw = ctypes.CFUNCTYPE(None, binding.uc_engine, ctypes.c_uint64, ctypes.c_uint32)(self._on_block)
            handle = binding.uc_hook_h()
            status = binding.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, raw, None,
                                               ctypes.c_uint64(begin), ctypes.c_uint64(end))
            if status != 0:
                raise UcError(status)
            # The callback object must live as long as the hook: the binding keeps its own hooks' there too.
            uc._callbacks[handle.value] = raw
            self._raw, self._handle = raw, handle.value
        except (ImportError, AttributeError):
            self._handle = uc.hook_add(UC_HOOK_BLOCK, self._on_block, begin=begin, end=end)

    @staticmethod
    def _counting(uc: Uc) -> tuple[Callable[..., None], Callable[[], int]]:
        """The block hook and the reader of its total; the total is a closure's, cheaper to add to than an attribute."""
        total = 0
        counts: dict[int, int] = {}  # (address << 16 | size) -> instructions in that block

        def on_block(_uc: object, address: int, size: int, _data: object = None) -> None:
            nonlocal total
            try:
                total += counts[address << 16 | size]
            except KeyError:  # the block's first run
                n = counts[address << 16 | size] = thumb_instructions(bytes(uc.mem_read(address, size)))
                total += n

        return on_block, lambda: total

    @property
    def total(self) -> int:
        return self._read()

    def close(self) -> None:
        if self._handle is None:
            return
        if self._raw is not None:
            from unicorn.unicorn_py3 import unicorn as binding

            binding.uclib.uc_hook_del(self._uc._uch, binding.uc_hook_h(self._handle))
            self._uc._callbacks.pop(self._handle, None)
        else:
            self._uc.hook_del(self._handle)
        self._handle = self._raw = None


class MeteredService(LoadedService):
    """A loaded service whose slices and SDK calls go into its :class:`ServiceCost`.

    Its overrides run once per SDK call and once per slice, so they are kept
    to a few dictionary and tuple operations each (``python -m benchmarks metrics``).
    """

    def __init__(self, runtime: ServiceRuntime, manifest: Manifest, module: Module, instance_id: int,
                 cost: ServiceCost):
        super().__init__(runtime, manifest, module, instance_id)
        image = self._require_loaded("count")
        self.cost = cost
        self._counter = BlockCounter(self._machine.uc, image.code_base, image.code_size)
        self._now = runtime.clock.now
        self._counted = 0  # the counter's total at the end of the last slice
        self._calls: list[str] = []  # SDK calls of the slice running now, one name per call
        self._sequences: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._first = False  # the main thread's slice now running began with a call of setup() or loop()
        # import name -> (the records' name, the SDK method): one lookup per call, no name built
        self._sdk = {name: (CALL_NAMES.get(name, name), getattr(self, "_sdk_" + name)) for name in IMPORTS}

    def _slice_ended(self, kind: str) -> None:
        total = self._counter.total
        calls = tuple(self._calls)
        self._calls.clear()
        # One tuple per distinct sequence of calls (every period of a service makes the same): less memory, and
        # records of strings and tuples of strings only, which the garbage collector stops tracking.
        calls = self._sequences.setdefault(calls, calls)
        self.cost.record(self._now(), kind, total - self._counted, calls)
        self._counted = total

    def host_call(self, name: str, machine) -> int:
        try:
            recorded, serve = self._sdk[name]
        except KeyError:
            return super().host_call(name, machine)  # what an import of no SDK function meets there
        self._calls.append(recorded)
        return serve(machine)

    def _start_main(self, phase: str) -> None:
        self._first = True
        super()._start_main(phase)

    def _after(self, exit: Exit) -> None:
        if self._phase == "setup":
            kind = "setup"
        elif exit.reason is ExitReason.SUSPENDED:
            kind = "first" if self._first else PERIOD
            self._first = False
        else:
            kind = "end"
        self._slice_ended(kind)  # before the next slice can start (setup returning starts loop)
        super()._after(exit)

    def _run_handler(self, name: str, args: tuple[int, ...], sp: int | None = None) -> None:
        super()._run_handler(name, args, sp)
        self._slice_ended(name)

    def unload(self) -> None:
        super().unload()
        self._counter.close()  # after the code is gone; its range will hold other code later


class ServiceMeters:
    """The costs of the services one node runs, by service name; give it to :class:`ServiceRuntime` as ``meters``."""

    def __init__(self) -> None:
        self.costs: dict[str, ServiceCost] = {}

    def make_service(self, runtime: ServiceRuntime, manifest: Manifest, module: Module,
                     instance_id: int) -> LoadedService:
        cost = self.costs.get(manifest.name)
        if cost is None:
            cost = self.costs[manifest.name] = ServiceCost(manifest.name, start=runtime.clock.now())
        return MeteredService(runtime, manifest, module, instance_id, cost)

    def snapshot(self) -> dict[str, ServiceCost]:
        return {name: cost.copy() for name, cost in self.costs.items()}
