"""The embServe service runtime of a simulated node.

Loads udynlink modules from parsed manifests, runs them on the Cortex-M4
emulator (:mod:`hil.service.cpu`) and serves the SDK API (:mod:`hil.service.sdk_api`).
Time is the node's clock (any :class:`Clock`, e.g. :class:`hil.device.clock.VirtualClock`): ``embserve_sleep``
suspends only the calling service and its wake-up is a clock timer, so in
manual mode an hour of device time costs only the instructions run in it.

API for the node::

    runtime = ServiceRuntime(
        node_name, clock,
        console=lambda service_name, line: ...,         # printf output, one line per call
        sensors=lambda sdk_type: 21.5 or None,          # SDK sensor type (3 = temperature) -> value
        on_output=lambda service, key, type, value: ...,  # a declared output was published
        on_fault=lambda service, message: ...,          # a service faulted and was stopped
        machine=None,     # default: a shared emulator from hil.service.cpu.DEFAULT_POOL
        meters=None,      # hil.service.metering.ServiceMeters(): count each service's instructions and SDK calls
    )
    service = runtime.load(manifest, instance_id)     # ServiceLoadError on bad module / unknown import
    service.activate()       # runs setup(), then loop() until it sleeps
    service.input("rate", 5000)   # ServiceInputError if undeclared or wrongly typed
    service.deactivate()     # on_quit(), wakes loop() so it can return
    service.unload()         # frees its memory; the object is dead afterwards
    service.state            # ServiceState.LOADED / RUNNING / STOPPED / FAULTED
    service.stats            # ServiceStats(cpu_usage %, memory bytes, uptime s, error)
    runtime.close()          # unloads everything

Every call runs synchronously to the next suspension point; callbacks run
after the emulator has stopped, so they may call back into the runtime.

Threads of a service: ``setup()`` then ``loop()`` run on the service's main
thread, which may sleep. ``on_input()`` and ``on_quit()`` run to completion on
the same stack, below the suspended main thread (like an interrupt handler),
and must not sleep. A service that faults (bad memory access, invalid
instruction, more than ``instruction_budget`` instructions without sleeping,
sleeping in a handler) is stopped and reported through ``on_fault``; the rest
of the node keeps running. ``deactivate()`` wakes a sleeping ``loop()`` early
so that it sees the quit flag; a loop that goes back to sleep is abandoned.

``embserve_sleep(0)`` counts as 1 ms, so a polling service cannot stall a
manual clock.

Details the node may rely on: two services of the same name cannot be loaded
on one node (udynlink refuses duplicate module names); inputs to a service
that is not running raise :class:`ServiceStateError`; outputs not declared in
the manifest (or of another type) are discarded; float outputs arrive as the
float32 the service stored (21.3 -> 21.299999237060547); ``cpu_usage`` is the
host time spent emulating the service per second of device time, so it is
small on a manual clock.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from . import sdk_api, symbols
from .cpu import DEFAULT_POOL, Exit, ExitReason, GuestError, Image, Machine
from .manifest import Manifest
from .sdk_api import ValueType
from .udlm import Module, SymbolKind

log = logging.getLogger(__name__)

DEFAULT_STACK_SIZE = 4096
DEFAULT_INSTRUCTION_BUDGET = 1_000_000  # per slice: ~10 ms of host time before a runaway is stopped
_HANDLER_FRAME = 64  # bytes kept free below the main thread's SP before a handler's data
_MIN_SLEEP_MS = 1
_MAX_COPY = 1 << 20

Console = Callable[[str, str], None]
Sensors = Callable[[int], "float | None"]
OutputCallback = Callable[["LoadedService", str, int, "int | float | list"], None]
FaultCallback = Callable[["LoadedService", str], None]


class Timer(Protocol):
    def cancel(self) -> None: ...


class ServiceFactory(Protocol):
    """Makes the object a loaded service is (e.g. :class:`hil.service.metering.ServiceMeters`, which counts its cost)."""

    def make_service(self, runtime: ServiceRuntime, manifest: Manifest, module: Module,
                     instance_id: int) -> LoadedService: ...


class Clock(Protocol):
    """The device time a runtime runs on: seconds now, and a timer that fires after a delay."""

    def now(self) -> float: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class ServiceLoadError(Exception):
    """The manifest's module cannot be loaded on this node."""


class ServiceInputError(ValueError):
    """An input write names an undeclared key or has the wrong type."""


class ServiceStateError(RuntimeError):
    """The operation needs another service state (e.g. input to a stopped service)."""


class ServiceState(enum.Enum):
    LOADED = "loaded"
    RUNNING = "running"
    STOPPED = "stopped"
    FAULTED = "faulted"


@dataclass(frozen=True)
class FaultReport:
    """Why and where a service stopped: the message, its source location when the ELF is known, the registers."""

    service: str
    message: str  # what the CPU or runtime saw, with the location appended when known
    code_offset: int | None = None  # the faulting PC as an offset into the module's code
    location: symbols.Location | None = None
    registers: dict[str, int] | None = None

    def register_lines(self) -> list[str]:
        """The register dump in the firmware's layout: four registers a line."""
        if not self.registers:
            return []
        items = [f"{name}={value:#010x}" for name, value in self.registers.items()]
        return [" ".join(items[i : i + 4]) for i in range(0, len(items), 4)]


@dataclass(frozen=True)
class ServiceStats:
    cpu_usage: float  # host time spent emulating it, in percent of the device time since activation
    memory: int  # bytes: LOT + data + bss + stack
    uptime: float  # seconds of device time since activation; 0 unless running
    error: str  # why it faulted or stopped by itself; "" otherwise


class ServiceRuntime:
    def __init__(
        self,
        node_name: str,
        clock: Clock,
        console: Console,
        sensors: Sensors,
        on_output: OutputCallback,
        on_fault: FaultCallback,
        *,
        machine: Machine | None = None,
        stack_size: int = DEFAULT_STACK_SIZE,
        instruction_budget: int = DEFAULT_INSTRUCTION_BUDGET,
        meters: ServiceFactory | None = None,
    ):
        self.node_name = node_name
        self.clock = clock
        self.console = console
        self.sensors = sensors
        self.on_output = on_output
        self.on_fault = on_fault
        self._pooled = machine is None
        self.machine = machine if machine is not None else DEFAULT_POOL.acquire()
        self.stack_size = stack_size
        self.instruction_budget = instruction_budget
        self.meters = meters  # None: plain LoadedService objects, no counting at all
        self._services: dict[int, LoadedService] = {}

    @property
    def services(self) -> list[LoadedService]:
        return list(self._services.values())

    def get(self, instance_id: int) -> LoadedService | None:
        return self._services.get(instance_id)

    def load(self, manifest: Manifest, instance_id: int) -> LoadedService:
        module = manifest.module
        if module is None:
            raise ServiceLoadError(f"{manifest.name}: manifest carries no parsed module (use parse_manifest)")
        if instance_id in self._services:
            holder = self._services[instance_id].name
            raise ServiceLoadError(f"{manifest.name}: instance {instance_id} already holds {holder}")
        for other in self._services.values():
            if other.name == manifest.name:
                raise ServiceLoadError(
                    f"{manifest.name}: a service of that name is already loaded (instance {other.instance_id})"
                )
        unknown = [name for name in module.imports if name not in sdk_api.IMPORTS]
        if unknown:
            names = ", ".join(f"`{n}`" for n in unknown)
            raise ServiceLoadError(
                f"{manifest.name}: unknown import {names} (this firmware exports {', '.join(sdk_api.IMPORTS)})"
            )
        for name in sdk_api.REQUIRED_EXPORTS:
            if name not in module.exports:
                raise ServiceLoadError(f"{manifest.name}: module exports no `{name}` function")
        make = LoadedService if self.meters is None else self.meters.make_service
        service = make(self, manifest, module, instance_id)
        self._services[instance_id] = service
        return service

    def close(self) -> None:
        """Unload every service and give the machine back to the pool."""
        for service in list(self._services.values()):
            service.unload()
        if self._pooled:
            DEFAULT_POOL.release(self.machine)
            self._pooled = False

    def _forget(self, service: LoadedService) -> None:
        self._services.pop(service.instance_id, None)


class LoadedService:
    """One module loaded on a node: its memory, its main thread and its SDK calls."""

    def __init__(self, runtime: ServiceRuntime, manifest: Manifest, module: Module, instance_id: int):
        self.runtime = runtime
        self.manifest = manifest
        self.module = module
        self.instance_id = instance_id
        self.label = f"{manifest.name}@{runtime.node_name}"
        self.state = ServiceState.LOADED
        self._machine = runtime.machine
        self._image: Image | None = self._machine.map_image(
            self, module.code, module.ram_size, runtime.stack_size
        )
        self._error = ""
        self._host_seconds = 0.0
        self._activated_at = 0.0
        self._phase: str | None = None  # "setup" or "loop" while the main thread exists
        self._context: object | None = None  # saved CPU state of the suspended main thread
        self._resume_pc = 0
        self._suspended_sp = 0
        self._sleep_ms = 0
        self._wake: Timer | None = None
        self._handler: str | None = None  # name of the handler running now, if any
        self._quitting = False
        self._events: list[Callable[[], None]] = []
        self.fault: FaultReport | None = None  # the last fault, symbolized when the ELF is known
        self._init_memory()

    # -- public API --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def stats(self) -> ServiceStats:
        running = self.state is ServiceState.RUNNING
        uptime = max(0.0, self.runtime.clock.now() - self._activated_at) if running else 0.0
        cpu = 100.0 * self._host_seconds / uptime if uptime > 0 else 0.0
        return ServiceStats(
            cpu_usage=min(100.0, cpu),
            memory=self.module.ram_size + self.runtime.stack_size,
            uptime=uptime,
            error=self._error,
        )

    def activate(self) -> None:
        self._require_loaded("activate")
        if self.state is ServiceState.RUNNING:
            return
        self._init_memory()
        self._error = ""
        self._host_seconds = 0.0
        self._activated_at = self.runtime.clock.now()
        self._quitting = False
        self.state = ServiceState.RUNNING
        self._start_main("setup")
        self._dispatch()

    def deactivate(self) -> None:
        self._require_loaded("deactivate")
        if self.state is not ServiceState.RUNNING:
            return
        self._quitting = True
        if "on_quit" in self.module.exports:
            self._run_handler("on_quit", ())
        if self.state is ServiceState.RUNNING and self._context is not None:
            self._cancel_wake()
            self._resume_main()  # sleep returns early so loop() sees the quit flag
        if self.state is ServiceState.RUNNING:
            self._stop_main()
            self.state = ServiceState.STOPPED
        self._dispatch()

    def unload(self) -> None:
        if self._image is None:
            return
        self.deactivate()
        self._stop_main()
        self._machine.unmap_image(self._image)
        self._image = None
        self.runtime._forget(self)

    def input(self, key: str, value: float) -> None:
        spec = self.manifest.input(key)
        if spec is None:
            declared = ", ".join(s.key for s in self.manifest.inputs) or "none"
            raise ServiceInputError(f"{self.name}: `{key}` is not a declared input (inputs: {declared})")
        value = _coerce(self.name, key, spec.type, value)
        self._require_loaded("take input")
        if self.state is not ServiceState.RUNNING:
            raise ServiceStateError(f"{self.name}: cannot take input `{key}`: service is {self.state.value}")
        if "on_input" not in self.module.exports:
            return
        base = self._thread_sp()
        value_at = (base - _HANDLER_FRAME - 8) & ~7
        io_at = (value_at - sdk_api.IO_SIZE) & ~7
        self._machine.uc.mem_write(value_at, sdk_api.pack_value(spec.type, value))
        self._machine.uc.mem_write(io_at, sdk_api.pack_io(key, spec.type, value_at, 1))
        self._run_handler("on_input", (io_at,), sp=io_at)
        self._dispatch()

    def __repr__(self) -> str:
        return f"<LoadedService {self.label} instance {self.instance_id} {self.state.value}>"

    # -- memory ------------------------------------------------------------------

    def _init_memory(self) -> None:
        """Fill the LOT, copy data, clear bss and stack (a fresh start on every activation)."""
        image = self._require_loaded("initialise")
        m = self.module
        data_base = image.ram_base + m.lot_size
        ram = bytearray(m.lot_size) + bytearray(m.data) + bytearray(m.bss_size)
        for rel in m.relocations:
            sym = m.symbols[rel.symbol]
            if sym.kind is SymbolKind.EXTERN:
                address = self._machine.host_address(sym.name)
            else:
                address = sym.value + (image.code_base if sym.in_code else data_base)
            at = 4 * rel.slot if rel.slot < m.num_lot else m.lot_size + 4 * (rel.slot - m.num_lot)
            ram[at : at + 4] = address.to_bytes(4, "little")
        uc = self._machine.uc
        uc.mem_write(image.ram_base, bytes(ram))
        uc.mem_write(image.stack_base, bytes(image.stack_top - image.stack_base))

    def _require_loaded(self, action: str) -> Image:
        if self._image is None:
            raise ServiceStateError(f"{self.name}: cannot {action}: service was unloaded")
        return self._image

    def _entry(self, name: str) -> int:
        return self._require_loaded("run").code_base + self.module.exports[name]

    def _thread_sp(self) -> int:
        """Where a handler's frame may start: below the suspended main thread, or at the stack top."""
        image = self._require_loaded("run")
        return self._suspended_sp if self._context is not None else image.stack_top

    # -- the main thread -------------------------------------------------------------

    def _start_main(self, phase: str) -> None:
        self._phase = phase
        self._context = None
        image = self._require_loaded("run")
        self._after(self._machine.call(self, self._entry(phase), (), image.stack_top, self.runtime.instruction_budget))

    def _resume_main(self) -> None:
        context, self._context = self._context, None
        self._wake = None
        if context is None or self.state is not ServiceState.RUNNING:
            return
        self._after(self._machine.resume(self, context, self._resume_pc, self.runtime.instruction_budget))

    def _after(self, exit: Exit) -> None:
        self._host_seconds += exit.host_seconds
        if exit.reason is ExitReason.FAULT:
            self._fault(f"{exit.fault} [in {self._phase}()]", exit)
        elif exit.reason is ExitReason.SUSPENDED:
            self._context, self._resume_pc, self._suspended_sp = exit.context, exit.resume_pc, exit.sp
            if self._quitting:
                return  # deactivate() abandons a loop that sleeps again after on_quit()
            self._wake = self.runtime.clock.call_later(self._sleep_ms / 1000.0, self._on_wake)
        elif self._phase == "setup":
            status = _signed(exit.value)
            if status < 0:
                self._fault(f"setup() returned {status}")
            elif self._quitting:
                self._phase = None
                self.state = ServiceState.STOPPED
            else:
                self._start_main("loop")
        else:
            self._phase = None
            if not self._quitting:
                self._error = "loop() returned before the service was deactivated"
            self.state = ServiceState.STOPPED

    def _on_wake(self) -> None:
        self._resume_main()
        self._dispatch()

    def _cancel_wake(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None

    def _stop_main(self) -> None:
        self._cancel_wake()
        self._context = None
        self._phase = None

    def _run_handler(self, name: str, args: tuple[int, ...], sp: int | None = None) -> None:
        if sp is None:
            sp = (self._thread_sp() - _HANDLER_FRAME) & ~7
        image = self._require_loaded("run")
        if sp - _HANDLER_FRAME < image.stack_base:
            self._fault(f"no stack left to run {name}() below the main thread")
            return
        self._handler = name
        try:
            exit = self._machine.call(self, self._entry(name), args, sp, self.runtime.instruction_budget)
        finally:
            self._handler = None
        self._host_seconds += exit.host_seconds
        if exit.reason is ExitReason.FAULT:
            self._fault(f"{exit.fault} [in {name}()]", exit)

    def _fault(self, message: str, exit: Exit | None = None) -> None:
        self._stop_main()
        self.state = ServiceState.FAULTED
        report = self._symbolize(message, exit)
        self.fault = report
        message = report.message
        self._error = message
        log.warning("%s faulted: %s", self.label, message)
        self._events.append(lambda: self.runtime.on_fault(self, message))

    def _symbolize(self, message: str, exit: Exit | None) -> FaultReport:
        image = self._image
        if exit is None or exit.registers is None or image is None:
            return FaultReport(self.name, message)
        offset = exit.pc - image.code_base if image.code_base <= exit.pc < image.code_base + image.code_size else None
        location = None
        if offset is not None:
            elf = symbols.service_symbols_for(self.manifest.service)
            location = elf.locate(offset) if elf is not None else None
        if location is not None and location.line is not None:
            message = f"{message}; source line: {location}"
        return FaultReport(self.name, message, offset, location, exit.registers)

    def _dispatch(self) -> None:
        """Deliver console lines, outputs and faults gathered while the emulator ran."""
        events, self._events = self._events, []
        for event in events:
            try:
                event()
            except Exception:
                log.exception("%s: callback failed", self.label)

    # -- SDK calls (from cpu.Machine while this service runs) --------------------------

    def host_call(self, name: str, machine: Machine) -> int:
        return getattr(self, "_sdk_" + name)(machine)

    def _sdk_embserve_printf_impl(self, m: Machine) -> int:
        fmt = m.read_cstring(m.arg(1), what="format string")
        text = sdk_api.format_printf(m, fmt, m.arg(2))
        if text:
            for line in text.removesuffix("\n").split("\n"):
                self._events.append(lambda line=line: self.runtime.console(self.name, line))
        return len(text)

    def _sdk_embserve_output_impl(self, m: Machine) -> int:
        key, type_code, data, count = sdk_api.read_io(m, m.arg(1))
        spec = self.manifest.output(key)
        if spec is None or type_code != spec.type or not 0 < count <= sdk_api.MAX_VALUES:
            log.debug("%s: output %r (type %d, %d values) discarded", self.label, key, type_code, count)
            return -1
        values = sdk_api.read_values(m, spec.type, data, count)
        value = values[0] if count == 1 else values
        self._events.append(lambda: self.runtime.on_output(self, key, int(spec.type), value))
        return 0

    def _sdk_embserve_get_sensor_impl(self, m: Machine) -> int:
        sensor_type, id_at = _signed(m.arg(1)), m.arg(2)
        if self.runtime.sensors(sensor_type) is None:
            return -1
        m.write_u32(id_at, sensor_type, "sensor id")  # a node has one sensor per type: its id is the type
        return 0

    def _sdk_embserve_get_sensor_data_impl(self, m: Machine) -> int:
        sensor_id, data_at = _signed(m.arg(1)), m.arg(2)
        value = self.runtime.sensors(sensor_id)
        if value is None:
            return -1
        now_ms = int(self.runtime.clock.now() * 1000)
        m.write(data_at, sdk_api.pack_sensor_data(sensor_id, sensor_id, now_ms, float(value)), "sensor data")
        return 0

    def _sdk_embserve_sleep_impl(self, m: Machine) -> int:
        if self._handler is not None:
            raise GuestError(f"{self._handler}() must not sleep, only setup() and loop() may")
        self._sleep_ms = max(_MIN_SLEEP_MS, m.arg(1))
        m.suspend()
        return 0

    def _sdk_memcpy(self, m: Machine) -> int:
        dst, src, n = m.arg(0), m.arg(1), _length(m.arg(2), "memcpy")
        if n:
            m.write(dst, m.read(src, n, "memcpy source"), "memcpy destination")
        return dst

    def _sdk_memset(self, m: Machine) -> int:
        dst, c, n = m.arg(0), m.arg(1), _length(m.arg(2), "memset")
        if n:
            m.write(dst, bytes([c & 0xFF]) * n, "memset destination")
        return dst

    def _sdk_strcmp(self, m: Machine) -> int:
        a = m.read_cstring(m.arg(0), what="strcmp argument").encode("latin-1")
        b = m.read_cstring(m.arg(1), what="strcmp argument").encode("latin-1")
        return (a > b) - (a < b)


def _coerce(service: str, key: str, type_: ValueType, value: object) -> int | float:
    if type_ is ValueType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ServiceInputError(f"{service}: input `{key}` is an int, got {value!r}")
        if not -(2**31) <= value < 2**31:
            raise ServiceInputError(f"{service}: input `{key}` = {value} does not fit in 32 bits")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ServiceInputError(f"{service}: input `{key}` is a float, got {value!r}")
    return float(value)


def _length(n: int, call: str) -> int:
    if n > _MAX_COPY:
        raise GuestError(f"{call} of {n} bytes is larger than any service memory")
    return n


def _signed(word: int) -> int:
    return word - (1 << 32) if word & 0x80000000 else word
