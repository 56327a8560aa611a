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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..boards import Board, Capabilities
from ..console import Console, Shell
from ..infra.process import MissingBinaryError
from ..lwm2m import Path as LwPath
from ..metrics import DeviceMetrics, MetricsUnavailable
from ..net import SlipBridge
from ..service.manifest import Manifest
from ..service.sdk_api import ValueType
from .errors import CapabilityMissing, TargetError, TargetUnavailable
from .host_commands import run_host_command
from .slip import SlipUplink

STIMULUS_TIMEOUT = 60.0  # seconds a board's stimulus command may take


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


class Target(abc.ABC):
    """One device, from power-on to power-off."""

    name: ClassVar[str]
    #: device seconds per wall-clock second (> 1 when the backend fast-forwards)
    time_scale: float = 1.0
    #: system tools the backend runs, each with the Debian package that has it
    tools: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: the backend loads a firmware file itself (an emulator), so the board's ``firmware`` field applies
    loads_firmware: ClassVar[bool] = False
    #: the node takes the reference firmware's shell commands (``sensor set``, ``embserve service
    #: input``) unless its board file says otherwise; a board on a serial port runs whatever was flashed
    reference_shell: ClassVar[bool] = True

    @classmethod
    def check_tools(cls) -> None:
        """:class:`MissingBinaryError` naming the first missing tool and its Debian package
        (backends that cannot run here for another reason raise :class:`TargetUnavailable`)."""
        for tool, package in cls.tools:
            if shutil.which(tool) is None:
                raise MissingBinaryError(f"{tool} is not installed: apt-get install {package}")

    #: the node's network over a SLIP line through this host, when a backend gives it one
    uplink: SlipUplink | None = None
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

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @abc.abstractmethod
    async def start(self) -> None:
        """Power the device on; the console reader is attached before it boots.

        Returns once the shell prompt is seen.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Power off and release everything; safe to call twice and after a failed start."""

    async def resolve_firmware(self) -> Path | None:
        """The firmware to load: the configured one, else what the board file names (the
        reference firmware is built on first use); None when neither names one."""
        if self.config.firmware:
            path = Path(self.config.firmware).resolve()
            if not path.is_file():
                raise TargetError(f"{self.endpoint}: firmware {path} does not exist")
            return path
        board = self.config.board
        if board is None or not board.firmware:
            return None
        if board.uses_reference_firmware:
            return await self.reference_firmware()
        return board.existing_file("firmware")

    async def reference_firmware(self) -> Path:
        """The reference firmware, from the per-user cache (built there on first use)."""
        from ..reference_firmware import FirmwareError, reference_firmware

        try:
            return await asyncio.to_thread(reference_firmware)
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
        await self.shell.exec(f"embserve connector lwm2m server_add {server_uri} {self.endpoint}", timeout)

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

    async def sleep_device(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (backends with virtual time override this)."""
        import asyncio

        await asyncio.sleep(seconds / self.time_scale)

    async def reboot(self, timeout: float = 10.0) -> None:
        await self.console.send_line("kernel reboot")
        await self.console.expect_prompt(timeout)

    def describe(self) -> str:
        board = self.config.board.name if self.config.board else "-"
        return f"{self.name} target, board {board}, endpoint {self.endpoint}"

    async def __aenter__(self) -> "Target":
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.console.close()


_TARGETS: dict[str, type[Target]] = {}
# Backends are imported on first use so a missing optional tool never breaks the others.
_MODULES = {"sim": "hil.targets.sim", "qemu": "hil.targets.qemu", "renode": "hil.targets.renode", "serial": "hil.targets.serial"}


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
