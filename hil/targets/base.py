"""The one interface every device backend implements, and its registry.

A :class:`Target` brings one embServe device up and gives the harness its
console. Everything above it (bootstrap through the shell, the gateway, the
deployer, the checks) is the same for the simulator, QEMU, Renode and a real
board on a serial port. Backends register themselves by name with
:func:`register_target`; :func:`get_target_class` finds them.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..boards import Board, BoardError, Capabilities
from ..bundle.timeline import Timeline
from ..console import Console, Shell
from ..faults import FaultWatcher, gdb_symbol_script
from ..net.capture import PacketCapture
from ..infra.process import MissingBinaryError
from ..lwm2m import Path as LwPath
from ..metrics import DeviceMetrics, MetricsUnavailable
from ..net import SlipBridge
from ..progress import waiting
from ..service.manifest import Manifest
from ..service.sdk_api import ValueType
from .errors import BootstrapRefused, CapabilityMissing, TargetConfigError, TargetError, TargetUnavailable
from .host_commands import run_host_command
from .slip import SlipUplink
from .virtual_time import EmulatorClock, ExchangeSource, TimeGovernor, wait_device_time


@dataclass(frozen=True)
class ReferenceBuild:
    """The reference firmware's build for ``board`` (``firmware/src/boards/<board>/``), made on first use."""

    board: str


def reference_build(board: Board) -> ReferenceBuild | None:
    """The reference firmware build the board file names (``firmware = "reference"`` or
    ``"reference:<board>"``), None when it names none; :class:`TargetConfigError` when the
    shipped firmware has no such build."""
    name = board.reference_firmware_board
    if name is None:
        return None
    from .. import resources
    from ..reference_firmware import firmware_boards

    known = firmware_boards(resources.firmware_dir())
    if name not in known:
        raise TargetConfigError(
            f"board file {board.source}: field 'firmware' is {board.firmware!r}, but the reference firmware has no"
            f" build for board {name!r} (it builds for {', '.join(known)}; name one as \"reference:<board>\","
            " or a firmware file)")
    return ReferenceBuild(name)


#: the board each target runs when none is named (serial needs one named)
DEFAULT_BOARDS: dict[str, str | None] = {"sim": "sim", "qemu": "mps2_an385", "renode": "mps2_an385", "serial": None,
                                         "labgrid": None}
#: a board on a labgrid place is a board on a serial port
BOARD_BACKEND = {"labgrid": "serial"}

GDB = "gdb-multiarch"  # Debian's package of the same name
#: the reference firmware's function called with (name, code, data, bss) after it loads a service
SERVICE_LOADED_HOOK = "rt_debug_service_loaded"
OBJCOPY = "arm-none-eabi-objcopy"  # comes with gcc-arm-none-eabi
GDB_HOST = "127.0.0.1"
#: boot waits grow by this factor while a debugger holds the CPU (an hour for a 1 s wait)
GDB_WAIT = 3600.0

STIMULUS_TIMEOUT = 60.0  # seconds a board's stimulus command may take
#: how the reference firmware takes a static address (docs/fleets.md): on the interface that is up
IPV4_COMMAND = "net ipv4 set {interface} {gateway}"
#: what a Zephyr-style shell (and the reference firmware's) prints when it does not take a command
_REFUSALS = re.compile(
    r"command not found|wrong parameter count|unknown parameter|subcommand required|\binvalid\b|\bcannot\b"
    r"|\bfailed\b|\berror\b|not available|usage:",
    re.IGNORECASE,
)


def shell_refusal(lines: list[str]) -> str | None:
    """The line in which a shell refused a command (unknown, bad arguments, failed), or None."""
    return next((line.strip() for line in lines if _REFUSALS.search(line)), None)


@dataclass
class TargetConfig:
    """What a backend needs to bring one device up."""

    endpoint: str  # the LwM2M endpoint name the device will register with
    log_dir: Path
    board: Board | None = None
    firmware: Path | None = None
    serial_port: str | None = None
    net_serial_port: str | None = None
    gateway_host: str | None = None  # address the device is told, when it differs from where the gateway listens
    sensors: dict[str, float] = field(default_factory=dict)  # initial sensor values
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific knobs
    timeline: Timeline | None = None  # where the actions taken on the device are recorded (bundles)
    capture: PacketCapture | None = None  # where the datagrams of the node's SLIP line are recorded, when it has one
    gdb_port: int | None = None  # start halted with a GDB server on this port (0: a free one), where the backend can


class Target(abc.ABC):
    """One device, from power-on to power-off."""

    name: ClassVar[str]
    #: device seconds per wall-clock second (> 1 when the backend fast-forwards at a fixed rate); a
    #: backend in virtual time keeps 1 (its speed varies: waits stay upper bounds) and stamps readings
    #: with device time instead (:meth:`device_time_of`)
    time_scale: float = 1.0
    #: system tools the backend runs, each with the Debian package that has it
    tools: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: the backend loads a firmware file itself (an emulator), so the board's ``firmware`` field applies
    loads_firmware: ClassVar[bool] = False
    #: the node takes the reference firmware's shell commands (``sensor set``, ``embserve service
    #: input``) unless its board file says otherwise; a board on a serial port runs whatever was flashed
    reference_shell: ClassVar[bool] = True

    #: the firmware file the device runs, once started (None: the simulator, or a board flashed beforehand)
    firmware: Path | None = None

    @classmethod
    def check_tools(cls) -> None:
        """:class:`MissingBinaryError` naming the first missing tool and its Debian package
        (backends that cannot run here for another reason raise :class:`TargetUnavailable`)."""
        for tool, package in cls.tools:
            if shutil.which(tool) is None:
                raise MissingBinaryError(f"{tool} is not installed: apt-get install {package}")

    #: the node's network over a SLIP line through this host, when a backend gives it one
    uplink: SlipUplink | None = None
    #: the device's clock, when the backend runs the device in virtual time (None: device time is the host's)
    clock: EmulatorClock | None = None
    #: switches the clock between skipping idle time and keeping the host's pace (hil.targets.virtual_time)
    governor: TimeGovernor | None = None
    #: where the backend's execution metrics come from (option ``metrics``); "" when it records none
    metrics_source: ClassVar[str] = ""

    def __init__(self, config: TargetConfig):
        self.config = config
        config.log_dir.mkdir(parents=True, exist_ok=True)
        prompt = config.board.prompt if config.board else "uart:~$ "
        self.console = Console(f"{config.endpoint} console", config.log_dir / f"{config.endpoint}.console.log")
        self.console.fail_on("HardFault in main", "Kernel panic", "ZEPHYR FATAL ERROR")
        self.shell = Shell(self.console, prompt)
        #: the board file, or the target's defaults when the node has none
        self.board = config.board or Board(name="(no board file)", arch="-", backends=(self.name,))
        self.capabilities: Capabilities = self.board.capabilities(self.reference_shell)
        self.faults = FaultWatcher(config.endpoint, self.console, lambda: self.firmware_elf)
        self.timeline = config.timeline
        if self.timeline is not None:
            self.timeline.clocks[config.endpoint] = self.device_time
        #: how to attach a debugger, once started with ``gdb_port`` (printed by ``replay --gdb``)
        self.gdb_command: list[str] | None = None
        self._bootstrap: list[str] = []  # shell commands repeated after a reboot

    @property
    def firmware_elf(self) -> Path | None:
        """The firmware ELF the device runs, when the harness loaded it (for symbolized fatal faults)."""
        return getattr(self, "firmware", None) or None

    def device_time(self) -> float | None:
        """The device's clock in seconds, where the backend has one the harness can read (else None)."""
        return None

    @property
    def boot_wait_scale(self) -> float:
        """How much longer than usual a boot may take: waiting for a debugger has no useful limit."""
        return GDB_WAIT if self.config.gdb_port is not None else 1.0

    def _gdb_ready(self, port: int, elf: Path | None) -> None:
        """The GDB server is up (the CPU halted): remember and announce how to attach.

        With a firmware ELF, a GDB script of the node's own loads each service's
        ELF where the firmware put it (see :func:`hil.faults.gdb_symbol_script`),
        so ``break loop`` resolves once the service is installed.
        """
        if elf is not None:
            elf = self._debugger_elf(elf)
        command = [GDB, "-q", *([str(elf)] if elf else []), "-ex", f"target remote {GDB_HOST}:{port}"]
        if elf is not None:
            services = gdb_symbol_script(self.config.log_dir / f"{self.endpoint}.services.gdb")
            script = self.config.log_dir / f"{self.endpoint}.gdb"
            script.write_text(
                "# written by embserve-hil: load each service's symbols when the firmware loads it\n"
                "set confirm off\nset breakpoint pending on\n"
                f"break *{SERVICE_LOADED_HOOK}\ncommands\n  silent\n  source {services}\n  continue\nend\n")
            command += ["-x", str(script)]
        self.gdb_command = command
        announce = self.config.options.get("gdb_announce")
        if announce is not None:
            announce(shlex.join(command))

    def _debugger_elf(self, elf: Path) -> Path:
        """The firmware ELF as GDB should get it: its .bss not mapped as a section.

        Services are loaded into a pool inside the firmware's .bss; GDB takes
        the section an address falls in to pick the symbols, so with .bss
        mapped it would name the pool (``pool_mem``) for every service address.
        The copy keeps every symbol and debug entry (bss variables still print).
        """
        copy = self.config.log_dir / f"{self.endpoint}.gdb.elf"
        try:
            subprocess.run([OBJCOPY, "--set-section-flags", ".bss=contents", str(elf), str(copy)],
                           check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return elf
        return copy

    def record(self, action: str, **args: Any) -> None:
        """Note an action the harness takes on this device in the timeline (bundles), if there is one."""
        if self.timeline is not None:
            self.timeline.record(action, self.endpoint, **args)

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @abc.abstractmethod
    async def start(self) -> None:
        """Power the device on; the console reader is attached before it boots.

        Returns once the shell prompt is seen.
        """

    def check_config(self) -> None:
        """Cheap checks of the configuration, before anything starts; :class:`TargetConfigError` says what
        is wrong. The default checks the firmware a backend that loads one would take."""
        if self.loads_firmware:
            self.check_firmware()

    @abc.abstractmethod
    async def stop(self) -> None:
        """Power off and release everything; safe to call twice and after a failed start."""

    def check_firmware(self) -> Path | ReferenceBuild | None:
        """Which firmware :meth:`resolve_firmware` will take, without building anything: the configured
        file, the board file's, or a build of the reference firmware; None when neither names one.
        :class:`TargetConfigError` when what is named does not exist."""
        if self.config.firmware:
            path = Path(self.config.firmware).resolve()
            if not path.is_file():
                raise TargetConfigError(f"{self.endpoint}: firmware {path} does not exist")
            return path
        board = self.config.board
        if board is None or not board.firmware:
            return None
        try:
            return reference_build(board) or board.existing_file("firmware")
        except (BoardError, TargetConfigError) as e:
            raise TargetConfigError(f"{self.endpoint}: {e}") from None

    async def resolve_firmware(self) -> Path | None:
        """The firmware to load: the configured one, else what the board file names (the
        reference firmware is built for its board on first use); None when neither names one."""
        firmware = self.check_firmware()
        if isinstance(firmware, ReferenceBuild):
            return await self.reference_firmware(firmware.board)
        return firmware

    async def reference_firmware(self, board: str | None = None) -> Path:
        """The reference firmware for ``board`` (default: its first board, mps2-an385), from the
        per-user cache (built there on first use)."""
        from ..reference_firmware import DEFAULT_BOARD, FirmwareError, reference_firmware

        try:
            return await asyncio.to_thread(reference_firmware, board=board or DEFAULT_BOARD)
        except FirmwareError as e:
            raise TargetError(f"{self.endpoint}: {e}") from None

    @property
    def bridge(self) -> SlipBridge | None:
        """The SLIP bridge (with an uplink, once bootstrapped), for its statistics."""
        return self.uplink.bridge if self.uplink else None

    def device_server_uri(self, gateway_host: str, gateway_port: int) -> str:
        """The CoAP URI the device must be told to reach a gateway listening at host:port."""
        if self.uplink is not None:
            # The bridge on this host relays what the node sends to its SLIP peer, wherever the gateway listens here.
            return self.uplink.server_uri(gateway_host, gateway_port)
        host = self.config.gateway_host or gateway_host
        return f"coap://{host}:{gateway_port}"

    async def bootstrap(self, server_uri: str, timeout: float = 10.0) -> None:
        """What IoTNetEMU does after boot: point the device's LwM2M client at the gateway."""
        self.record("bootstrap", server_uri=server_uri)
        await self.shell.exec(f"embserve connector lwm2m server_add {server_uri} {self.endpoint}", timeout)

    async def run_bootstrap(self, commands: list[str], timeout: float = 10.0) -> None:
        """IoTNetEMU's bootstrap: ``commands`` sent to the shell as written, in order, and repeated after a reboot.

        :class:`BootstrapRefused` names the first command the firmware did
        not take (see :func:`shell_refusal`) and what it said.
        """
        if self.uplink is not None:
            uri = next((w for c in commands for w in c.split() if w.startswith(("coap://", "coaps://"))), None)
            await self.uplink.start_bridge(uri)
        self._bootstrap = list(commands)
        for command in commands:
            await self.run_checked(command, timeout)

    async def run_checked(self, command: str, timeout: float = 10.0) -> list[str]:
        """Run one shell command; :class:`BootstrapRefused` when the firmware refuses it."""
        out = await self.shell.exec(command, timeout)
        refusal = shell_refusal(out)
        if refusal is not None:
            raise BootstrapRefused(command, refusal)
        return out

    async def configure_ipv4(self, timeout: float = 10.0) -> None:
        """Give the node the static address of option ``ipv4`` (``("10.10.12.1/24", "10.10.12.254")``), if any.

        Run after every boot, before the bootstrap commands: the reference
        firmware starts with QEMU user networking's address (10.0.2.15).
        """
        ipv4 = self.config.options.get("ipv4")
        if ipv4:
            interface, gateway = ipv4
            await self.run_checked(IPV4_COMMAND.format(interface=interface, gateway=gateway), timeout)

    # -- what a test may do to the node: the board file's capabilities ----------

    def can_inject(self, sensor: str) -> bool:
        """The firmware takes a value for ``sensor`` from its shell (``sensor set``)."""
        return sensor in self.capabilities.inject

    def can_set_sensor(self, sensor: str) -> bool:
        """:meth:`set_sensor` can put a value on ``sensor``: by the bench's stimulus, or by injecting it."""
        return self.capabilities.can_set(sensor)

    def sensor_tolerance(self, sensor: str) -> float:
        """How far a reading may be from the value :meth:`set_sensor` set."""
        return self.board.stimulus_tolerance if sensor in self.capabilities.stimulus else 0.01

    async def set_sensor(self, name: str, value: float, timeout: float = 5.0) -> None:
        """Put ``value`` on the sensor: the board's stimulus command when it has one, else ``sensor set``.

        :class:`CapabilityMissing` when the board has neither.
        """
        self.record("sensor", name=name, value=value)
        stimulus = self.capabilities.stimulus.get(name)
        if stimulus is not None:
            await run_host_command(self.endpoint, f"stimulus-{name}", stimulus,
                                   {"value": value, "sensor": name, "board": self.board.name},
                                   log_dir=self.config.log_dir, timeout=STIMULUS_TIMEOUT)
            await asyncio.sleep(self.board.stimulus_settle)
            return
        if not self.can_inject(name):
            raise CapabilityMissing(
                f"board {self.board.name} cannot set sensor {name!r}: its firmware takes no injected {name} values"
                f" (board file field 'inject': {sorted(self.capabilities.inject)}) and the board file names no"
                f" stimulus.{name} command"
            )
        out = await self.shell.exec(f"sensor set {name} {value}", timeout)
        errors = [line for line in out if "error" in line.lower() or "not found" in line.lower()]
        if errors:
            raise TargetError(f"{self.endpoint}: sensor set {name} {value} failed: {errors[0]}")

    async def set_service_input(self, instance: int, key: str, value: float, *, manifest: Manifest | None = None,
                                gateway: Any = None, timeout: float = 5.0) -> list[str]:
        """Write input ``key`` of the service at ``/9/instance`` the way the board file says.

        ``shell``: the board's ``service_input_command`` (returns the lines it
        printed); ``lwm2m``: a Write, through ``gateway``, of the resource the
        service's ``manifest`` maps the input to (returns ``[]``); ``none``, or
        an input the manifest maps to nothing: :class:`CapabilityMissing`.
        """
        self.record("input", instance=instance, key=key, value=value)
        way = self.capabilities.service_input
        if way == "shell":
            command = self.capabilities.service_input_command.format(instance=instance, key=key, value=value)
            return await self.shell.exec(command, timeout)
        if way == "lwm2m":
            if manifest is None or gateway is None:
                raise TargetError(f"{self.endpoint}: writing input {key!r} over LwM2M needs the service's manifest"
                                  f" and the gateway")
            path, typed = self._mapped_input(manifest, key, value, gateway)
            await gateway.write(self.endpoint, path, typed, timeout=timeout)
            return []
        raise CapabilityMissing(f"board {self.board.name} has no way to write service inputs"
                                f" (board file field 'service_input' is {way!r})")

    def _mapped_input(self, manifest: Manifest, key: str, value: float, gateway: Any) -> tuple[LwPath, float | int]:
        """The resource a service input is mapped to on this node, and the value in the input's type."""
        spec = manifest.input(key)
        if spec is None:
            declared = ", ".join(s.key for s in manifest.inputs) or "none"
            raise TargetError(f"{self.endpoint}: {manifest.name} declares no input {key!r} (inputs: {declared})")
        if not spec.mappings:
            raise CapabilityMissing(
                f"board {self.board.name} writes service inputs over LwM2M (service_input = \"lwm2m\"), but"
                f" {manifest.name} v{manifest.version} maps input {key!r} to no resource (its data_model_mapping is empty)"
            )
        mapping = spec.mappings[0]
        # "x" is the instance the node chose; the first one it registers (as for readings).
        instances = gateway.registration(self.endpoint).available_instances.get(mapping.obj, [])
        if not instances:
            raise TargetError(f"{self.endpoint}: input {key!r} of {manifest.name} is mapped to {mapping},"
                              f" but the node registers no /{mapping.obj} instance")
        typed = int(value) if spec.type is ValueType.INT else float(value)
        return LwPath(mapping.obj, instances[0], mapping.res), typed

    @property
    def metrics_enabled(self) -> bool:
        """Execution metrics were asked for (option ``metrics``) and this backend records them."""
        return bool(self.config.options.get("metrics")) and bool(self.metrics_source)

    async def metrics(self) -> DeviceMetrics:
        """The node's execution metrics so far (after :meth:`stop`, all of them); see :mod:`hil.metrics`.

        :class:`MetricsUnavailable` when the backend records none or they were not turned on.
        """
        if not self.metrics_source:
            raise MetricsUnavailable(
                f"{self.endpoint}: the {self.name} target records no execution metrics; the simulator counts what"
                f" each service runs and Renode's profiler what the CPU and its peripherals do (--target sim or renode)"
            )
        raise MetricsUnavailable(f"{self.endpoint}: execution metrics were not turned on for this node"
                                 f" (target option metrics; --hil-metrics, the hil_metrics marker or the metrics fixture)")

    def govern_time(self, in_flight: ExchangeSource) -> None:
        """Let the device's idle time be skipped whenever ``in_flight`` (the gateway's ``Gateway.in_flight``)
        counts nothing in flight with it; a target without virtual time ignores this."""
        if self.governor is not None:
            self.governor.watch(in_flight)

    @property
    def has_device_time(self) -> bool:
        """Whether :meth:`device_time_of` can stamp readings with device time."""
        return self.clock is not None

    def device_time_of(self, notification: Any) -> float | None:
        """The device time at which the message carrying ``notification`` left the device, when the
        backend saw it leave (a :class:`hil.readings.ReadingCollector`'s ``device_time``); else None."""
        message_id = getattr(notification, "message_id", None)
        if self.clock is None or message_id is None:
            return None
        return self.clock.message_time((message_id, notification.token))

    async def sleep_device(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass: on the device's clock when it has one, else on the host's."""
        if self.clock is not None:
            await wait_device_time(self.clock, seconds)
        else:
            await asyncio.sleep(seconds / self.time_scale)

    async def reboot(self, timeout: float = 10.0) -> None:
        self.record("reboot")
        await self.console.send_line("kernel reboot")
        await self.console.expect_prompt(timeout)

    def describe(self) -> str:
        board = self.config.board.name if self.config.board else "-"
        return f"{self.name} target, board {board}, endpoint {self.endpoint}"

    async def __aenter__(self) -> "Target":
        capture = self.config.capture
        if self.uplink is not None and capture is not None:
            name = f"{self.endpoint} sl0"
            self.uplink.capture = capture.sink(capture.add_interface(
                name, f"{self.endpoint}'s SLIP line, device side ({self.uplink.peer} is the gateway)"))
        try:
            with waiting(f"{self.endpoint} to boot on {self.name}"):
                await self.start()
            firmware = self.firmware_elf
            self.record("boot", target=self.name, board=self.config.board.name if self.config.board else None,
                         firmware=str(firmware) if firmware else None)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.governor is not None:
            self.governor.close()
        await self.stop()
        self.console.close()


_TARGETS: dict[str, type[Target]] = {}
# Backends are imported on first use so a missing optional tool never breaks the others.
_MODULES = {"sim": "hil.targets.sim", "qemu": "hil.targets.qemu", "renode": "hil.targets.renode", "serial": "hil.targets.serial",
            "labgrid": "hil.targets.labgrid"}


def register_target(cls: type[Target]) -> type[Target]:
    _TARGETS[cls.name] = cls
    return cls


def known_targets() -> list[str]:
    return sorted(set(_MODULES) | set(_TARGETS))


def get_target_class(name: str) -> type[Target]:
    if name not in _TARGETS and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name == _MODULES[name]:
                raise TargetUnavailable(f"target {name!r} is not available in this version of embserve-hil yet") from None
            raise
    if name not in _TARGETS:
        raise TargetUnavailable(f"unknown target {name!r}; known targets: {', '.join(known_targets())}")
    return _TARGETS[name]
