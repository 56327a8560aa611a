"""Services on a simulated node: LwM2M objects 9 and 35003 over the service runtime.

Object 9 (Software Management) follows OMA's state machine:

* a write of ``/9/{id}/2`` stores the package (``service.json`` bytes) →
  Update State DELIVERED;
* Install (``/9/{id}/4``) validates the manifest and loads the module →
  INSTALLED with Update Result 2, or Update Result 54 (a bad manifest or
  module: unsupported package), 50 (the module needs more memory than the
  node has left: both numbers in the reason, checked before anything is
  allocated) or 58 (anything else), with the reason in the package's 35003
  Error;
* Activate (``/9/{id}/10``) runs ``setup()`` then schedules ``loop()`` →
  Activation State true; Deactivate (``/9/{id}/11``) calls ``on_quit()``;
* Uninstall (``/9/{id}/6``) or deleting the instance stops and frees it.

A service that faults is stopped: Update Result 57, Activation State false,
the message in 35003 Error and on the console; the node and other services
go on. Outputs land on the resource their mapping names: ``lwm2m:3303/x/5700``
takes the board's ``/3303/0`` if no other service owns it (the board sensor
then stops writing it) or a new ``/3303`` instance.

Inputs are written by key (``embserve service input <id> <key> <value>`` on
the shell) or by the server: an input mapped to a writable resource, such as
``lwm2m:3308/x/5900`` (Set Point Value), gets its instance at install as an
output does, and a Write of that resource calls the service's ``on_input``
with the value in the input's type (an int input takes whole numbers only:
4.00 otherwise). While the service is not running the Write is answered 4.05
and the value is not stored. Install refuses (Update Result 54) an input
mapped to a resource the server cannot write (the OMA operations), to one that
is not an Integer or Float, or to one of the node's own management objects
(below 2048: Server, Device, Software Management, ...).

Object 35003 has instance 0 for the device (27400 → ``3:0``) and one per
installed package (27400 → ``9:{id}``); its values are computed on read.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..lwm2m.model import ObjLnk, Path, ResourceType, UpdateResult, UpdateState, resource_def
from ..service.manifest import Manifest, ManifestError, parse_manifest
from ..service.metering import ServiceMeters
from ..service.runtime import (
    DEFAULT_STACK_SIZE,
    Clock,
    LoadedService,
    ServiceInputError,
    ServiceLoadError,
    ServiceRuntime,
    ServiceState,
    ServiceStateError,
)
from ..service.sdk_api import ValueType
from .console import Console
from .objects import BadRequest, MethodNotAllowed, ObjectHandler, ObjectStore, allowed_operations
from .sensors import Sensors
from .shell import Command, Shell, ShellError

log = logging.getLogger("hil.device.software")

# SDK sensor types (embserve_get_sensor_impl) -> the node's sensor names.
SDK_SENSOR_TYPES = {3: "temperature", 4: "humidity", 5: "pressure", 1: "light"}
SOFTWARE = 9
MONITOR = 35003
# Objects below this are OMA's management objects (Security, Server, Device, ...):
# the node's own, never a service's input (a Write there drives the node itself).
FIRST_SERVICE_OBJECT = 2048


@dataclass
class Package:
    """What the node keeps for one /9 instance."""

    instance: int
    data: bytes | None = None
    manifest: Manifest | None = None
    service: LoadedService | None = None
    monitor: int | None = None  # its 35003 instance
    outputs: dict[str, list[Path]] = field(default_factory=dict)  # output key -> resource paths
    inputs: dict[Path, str] = field(default_factory=dict)  # resource path the server writes -> input key
    error: str = ""


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: a service's 21.3f reads 21.3, not 21.299999237."""
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value


class ServiceHost(Protocol):
    """The node's facilities its services use: name, time, console, log, sensors and objects."""

    endpoint: str
    memory_kb: int  # Memory Total (/3/0/21): what services may use in all
    clock: Clock
    console: Console
    shell: Shell
    sensors: Sensors
    objects: ObjectStore
    service_meters: ServiceMeters | None  # counts what each service runs, when asked for

    @property
    def uptime(self) -> float: ...

    def republish_sensors(self) -> None:
        """Write the board sensors' readings again (a service gave their instance back)."""

    def report(self, path: Path, value: Any) -> None:
        """A service output's new value at ``path``: stored, and told to the server (notification or Send)."""


class Services:
    """The node's packages, their runtime, and the LwM2M objects that show them."""

    def __init__(self, node: ServiceHost):
        self.node = node
        self.packages: dict[int, Package] = {}
        self.owners: dict[Path, int] = {}  # claimed instance path (/3303/0) -> /9 instance
        self._runtime: ServiceRuntime | None = None

    @property
    def runtime(self) -> ServiceRuntime:
        # Made on the first install: a node that never runs a service costs no emulator.
        if self._runtime is None:
            self._runtime = ServiceRuntime(
                self.node.endpoint,
                self.node.clock,
                console=self._console,
                sensors=self._sensor,
                on_output=self._on_output,
                on_fault=self._on_fault,
                machine=getattr(self.node, "service_machine", None),  # a node of its own CPU (e.g. under a debugger)
                meters=self.node.service_meters,
            )
        return self._runtime

    # -- boot ---------------------------------------------------------------
    def attach(self) -> None:
        """Plug the handlers into the node's fresh object store (called on every boot)."""
        store = self.node.objects
        store.set_handler(SOFTWARE, SoftwareHandler(self))
        store.set_handler(MONITOR, MonitorHandler(self))
        store.add_instance(MONITOR, 0, {27400: ObjLnk(3, 0), 27401: "0", 27402: "0", 27403: "0", 27404: ""})

    def close(self) -> None:
        """Power off: every service stops, nothing survives (RAM)."""
        if self._runtime is not None:
            self._runtime.close()
        self.packages.clear()
        self.owners.clear()

    def owns(self, path: Path) -> bool:
        return Path(path.obj, path.inst) in self.owners

    # -- runtime callbacks --------------------------------------------------
    def _console(self, service: str, line: str) -> None:
        self.node.console.print(f"[{service}] {line}")

    def _sensor(self, sdk_type: int) -> float | None:
        name = SDK_SENSOR_TYPES.get(sdk_type)
        if name is None or name not in self.node.sensors:
            return None  # the SDK call then reports "no such sensor" to the service
        return self.node.sensors[name].read()

    def _on_output(self, service: LoadedService, key: str, type_: int, value: Any) -> None:
        package = self.packages.get(service.instance_id)
        if package is None:
            return
        for path in package.outputs.get(key, []):
            if self.node.objects.exists(Path(path.obj, path.inst)):
                rd = resource_def(path)
                if rd is not None and rd.type is ResourceType.FLOAT:
                    value = shortest_float32(float(value))
                elif rd is not None and rd.type is ResourceType.INTEGER:
                    value = int(value)
                self.node.report(path, value)

    def _on_fault(self, service: LoadedService, message: str) -> None:
        package = self.packages.get(service.instance_id)
        self.node.shell.log("err", "embserve", f"service {service.name} (/9/{service.instance_id}) stopped: {message}")
        for line in service.fault.register_lines() if service.fault else ():
            self.node.shell.log("err", "embserve", f"  {line}")
        if package is not None:
            package.error = message
        store = self.node.objects
        inst = Path(SOFTWARE, service.instance_id)
        if store.exists(inst):
            store.set(inst.child(9), int(UpdateResult.UPDATE_ERROR))
            store.set(inst.child(12), False)

    # -- lifecycle ---------------------------------------------------------
    def store_package(self, inst: int, data: bytes) -> None:
        package = self.packages.setdefault(inst, Package(inst))
        if package.service is not None:
            raise MethodNotAllowed(f"/9/{inst} is installed; uninstall it before writing a new package")
        package.data = bytes(data)
        package.error = ""
        store = self.node.objects
        store.set(Path(SOFTWARE, inst, 7), int(UpdateState.DELIVERED))
        store.set(Path(SOFTWARE, inst, 9), int(UpdateResult.INITIAL))

    def install(self, inst: int) -> None:
        store = self.node.objects
        package = self.packages.setdefault(inst, Package(inst))
        if package.service is not None:
            return  # installing twice changes nothing
        if not package.data:
            self._install_failed(package, UpdateResult.UNSUPPORTED_PACKAGE, f"/9/{inst}: no package written to /9/{inst}/2")
            return
        try:
            manifest = parse_manifest(package.data, source=f"/9/{inst}/2")
            self._check_input_mappings(manifest, f"/9/{inst}/2")
            shortfall = self._memory_shortfall(manifest, inst)
            if shortfall:
                self._install_failed(package, UpdateResult.NOT_ENOUGH_STORAGE, shortfall)
                return
            service = self.runtime.load(manifest, inst)
        except (ManifestError, ServiceLoadError) as e:
            self._install_failed(package, UpdateResult.UNSUPPORTED_PACKAGE, str(e))
            return
        except Exception as e:  # a runtime bug must not take the node down
            log.exception("%s: install of /9/%d failed", self.node.endpoint, inst)
            self._install_failed(package, UpdateResult.INSTALLATION_FAILURE, f"{type(e).__name__}: {e}")
            return
        package.manifest, package.service, package.error = manifest, service, ""
        package.outputs = {spec.key: self._claim(inst, spec) for spec in manifest.outputs}
        package.inputs = {path: spec.key for spec in manifest.inputs for path in self._claim(inst, spec, InputHandler)}
        base = Path(SOFTWARE, inst)
        store.set(base.child(0), manifest.name)
        store.set(base.child(1), str(manifest.version))
        store.set(base.child(7), int(UpdateState.INSTALLED))
        store.set(base.child(9), int(UpdateResult.INSTALLED))
        self._ensure_monitor(package)
        self.node.shell.log("inf", "embserve", f"installed {manifest.name} v{manifest.version} at /9/{inst}")

    def memory_in_use(self, but: int | None = None) -> int:
        """Bytes the installed services take (code, LOT, data, bss, stack), leaving out instance ``but``."""
        stack = self.runtime.stack_size if self._runtime is not None else 0
        return sum(len(p.manifest.module.code) + p.manifest.module.ram_size + stack
                   for i, p in self.packages.items()
                   if i != but and p.service is not None and p.manifest is not None and p.manifest.module is not None)

    def _memory_shortfall(self, manifest: Manifest, inst: int) -> str:
        """Why ``manifest``'s module does not fit in what the node has left ("" when it fits), before anything is allocated."""
        module = manifest.module
        if module is None:
            return ""
        stack = self._runtime.stack_size if self._runtime is not None else DEFAULT_STACK_SIZE
        needed = len(module.code) + module.ram_size + stack
        total = self.node.memory_kb * 1024
        free = total - self.memory_in_use(but=inst)
        if needed <= free:
            return ""
        return (f"{manifest.name}: module needs {needed} bytes of memory (code {len(module.code)}, LOT {module.lot_size}, "
                f"data {len(module.data)}, bss {module.bss_size}, stack {stack}); the node has {free} bytes free "
                f"of {total} (Memory Total {self.node.memory_kb} kB)")

    def _install_failed(self, package: Package, result: UpdateResult, message: str) -> None:
        package.error = message
        store = self.node.objects
        store.set(Path(SOFTWARE, package.instance, 9), int(result))
        self._ensure_monitor(package)
        self.node.shell.log("err", "embserve", f"install of /9/{package.instance} failed: {message}")

    def _check_input_mappings(self, manifest: Manifest, source: str) -> None:
        """Refuse inputs mapped to what the server cannot write: before anything is loaded or claimed."""
        store = self.node.objects
        for i, spec in enumerate(manifest.inputs):
            for j, mapping in enumerate(spec.mappings):
                obj = store.definitions.get(mapping.obj)
                rd = obj.resource(mapping.res) if obj is not None else None
                if obj is None or rd is None:
                    why = f"object {mapping.obj} has no definition" if obj is None else \
                        f"object {mapping.obj} ({obj.name}) has no resource {mapping.res}"
                elif not rd.writable:
                    why = f"{rd.name} allows {allowed_operations(rd)}"
                elif rd.type not in (ResourceType.INTEGER, ResourceType.FLOAT):
                    why = f"{rd.name} is a {rd.type.value}; an input takes an integer or a float"
                elif mapping.obj < FIRST_SERVICE_OBJECT:
                    why = f"object {mapping.obj} ({obj.name}) is the node's own"
                else:
                    continue
                raise ManifestError(source, f"inputs[{i}].data_model_mapping[{j}]",
                                    f"input '{spec.key}': {mapping} is not writable here ({why})")

    def _claim(self, inst: int, spec: Any, handler: type[ObjectHandler] | None = None) -> list[Path]:
        """Resources an output (or input: ``handler`` on the object) is mapped to, claiming (or creating) the instances."""
        store = self.node.objects
        paths = []
        for mapping in spec.mappings:
            chosen = None
            for existing in sorted(store.instances(mapping.obj)) if mapping.obj in store.objects() else []:
                owner = self.owners.get(Path(mapping.obj, existing))
                if owner is None or owner == inst:
                    chosen = existing
                    break
            if mapping.obj not in store.objects():
                store.add_object(mapping.obj)
            if handler is not None and store.handler(mapping.obj) is None:
                store.set_handler(mapping.obj, handler(self))
            if chosen is None:
                # created with every mandatory resource (Sensor Value at 0.0 until the first output)
                chosen = store.free_instance_id(mapping.obj)
                store.add_instance(mapping.obj, chosen, {})
            self.owners[Path(mapping.obj, chosen)] = inst
            paths.append(Path(mapping.obj, chosen, mapping.res))
        return paths

    def _release(self, package: Package) -> None:
        store = self.node.objects
        for owned, owner in list(self.owners.items()):
            if owner != package.instance:
                continue
            del self.owners[owned]
            # The board's own sensor instance goes back to the board; others go away.
            if not (owned == Path(3303, 0) and "temperature" in self.node.sensors) and store.exists(owned):
                store.remove_instance(owned)
        self.node.republish_sensors()

    def _ensure_monitor(self, package: Package) -> None:
        store = self.node.objects
        if package.monitor is None or not store.exists(Path(MONITOR, package.monitor)):
            package.monitor = store.free_instance_id(MONITOR)
            store.add_instance(MONITOR, package.monitor, {27400: ObjLnk(SOFTWARE, package.instance),
                                                          27401: "0", 27402: "0", 27403: "0", 27404: ""})

    def activate(self, inst: int) -> None:
        package = self._installed(inst, "activate")
        package.error = ""
        package.service.activate()
        store = self.node.objects
        running = package.service.state is ServiceState.RUNNING
        store.set(Path(SOFTWARE, inst, 12), running)
        if running:
            store.set(Path(SOFTWARE, inst, 9), int(UpdateResult.INSTALLED))

    def deactivate(self, inst: int) -> None:
        package = self._installed(inst, "deactivate")
        package.service.deactivate()
        self.node.objects.set(Path(SOFTWARE, inst, 12), False)

    def uninstall(self, inst: int) -> None:
        package = self.packages.get(inst)
        if package is None:
            return
        if package.service is not None:
            package.service.unload()
        package.service = package.manifest = None
        package.inputs = {}
        self._release(package)
        store = self.node.objects
        if package.monitor is not None and store.exists(Path(MONITOR, package.monitor)):
            store.remove_instance(Path(MONITOR, package.monitor))
        package.monitor = None
        if store.exists(Path(SOFTWARE, inst)):
            for res, value in ((7, int(UpdateState.INITIAL)), (9, int(UpdateResult.INITIAL)), (12, False), (0, ""), (1, "")):
                store.set(Path(SOFTWARE, inst, res), value)

    def remove(self, inst: int) -> None:
        self.uninstall(inst)
        self.packages.pop(inst, None)

    def input(self, inst: int, key: str, value: float) -> None:
        package = self._installed(inst, f"input {key}")
        package.service.input(key, value)

    def write_input(self, path: Path, value: Any) -> None:
        """The server writes ``path``: the service whose input is mapped there gets it (on_input)."""
        owner = self.owners.get(Path(path.obj, path.inst))
        package = self.packages.get(owner) if owner is not None else None
        key = package.inputs.get(path) if package is not None else None
        if key is None or package.manifest is None or package.service is None:
            return  # no input is mapped here: the value is only stored
        spec = package.manifest.input(key)
        if spec is not None and spec.type is ValueType.INT:
            if not float(value).is_integer():
                raise BadRequest(f"{path}: input '{key}' of {package.manifest.name} is an int; {value!r} is not whole")
            value = int(value)
        try:
            package.service.input(key, value)
        except ServiceStateError as e:
            raise MethodNotAllowed(f"{path}: input '{key}' of /9/{package.instance}: {e}") from None
        except ServiceInputError as e:
            raise BadRequest(f"{path}: {e}") from None

    def _installed(self, inst: int, action: str) -> Package:
        package = self.packages.get(inst)
        if package is None or package.service is None:
            raise MethodNotAllowed(f"cannot {action} /9/{inst}: no service is installed there")
        return package

    # -- 35003 values -------------------------------------------------------
    def monitor_value(self, path: Path, value: Any) -> Any:
        if path.res == 27400:
            return value
        if path.inst == 0:
            return self._device_stats(path.res)
        package = next((p for p in self.packages.values() if p.monitor == path.inst), None)
        if package is None:
            return value
        if package.service is None:
            return {27401: "0", 27402: "0", 27403: "0", 27404: package.error}.get(path.res, value)
        stats = package.service.stats
        return {
            27401: f"{stats.cpu_usage:.1f}",
            27402: str(stats.memory),
            27403: str(int(stats.uptime)),
            27404: package.error or stats.error,
        }.get(path.res, value)

    def _device_stats(self, res: int) -> str:
        services = [p.service for p in self.packages.values() if p.service is not None]
        stats = [s.stats for s in services]
        if res == 27401:
            return f"{sum(s.cpu_usage for s in stats):.1f}"
        if res == 27402:
            return str(sum(s.memory for s in stats))
        if res == 27403:
            return str(int(self.node.uptime))
        return ""

def service_commands(current: Callable[[], Services | None]) -> Command:
    """``embserve service input|list``: the shell's way to a node's services (``current()``: None while off)."""

    def services() -> Services:
        found = current()
        if found is None:
            raise ShellError("service: the node is not running", errno.ENODEV)
        return found

    def service_input(shell: Shell, args: list[str]) -> int:
        inst_text, key, text = args[1], args[2], args[3]
        try:
            inst = int(inst_text)
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise ShellError(f"service input: bad instance or value: {inst_text!r} {text!r}") from None
        try:
            services().input(inst, key, value)
        except (MethodNotAllowed, ServiceInputError, ServiceStateError) as e:
            raise ShellError(f"service input: {e}", errno.EINVAL) from None
        shell.print(f"service input: {key}={text} delivered to {inst}")
        return 0

    def service_list(shell: Shell, args: list[str]) -> int:
        packages = services().packages
        if not packages:
            shell.print("no services")
        for inst, package in sorted(packages.items()):
            if package.service is None:
                shell.print(f"/9/{inst}: not installed{' (' + package.error + ')' if package.error else ''}")
                continue
            s = package.service.stats
            shell.print(f"/9/{inst}: {package.service.name} {package.service.state.value} "
                        f"cpu {s.cpu_usage:.1f}% mem {s.memory} B up {int(s.uptime)} s {s.error}".rstrip())
        return 0

    return Command("service", "Deployed services").add(
        Command("input", "Write a service input: input <instance> <key> <value>", service_input, 4),
        Command("list", "List installed services with their stats", service_list),
    )


class SoftwareHandler(ObjectHandler):
    """Object 9 hooks: package writes and the Install/Activate/... executes."""

    def __init__(self, services: Services):
        self.services = services

    def on_create(self, path: Path) -> None:
        store = self.services.node.objects
        for res, value in ((0, ""), (1, ""), (7, int(UpdateState.INITIAL)), (9, int(UpdateResult.INITIAL)), (12, False)):
            store.set(Path(SOFTWARE, path.inst, res), value)
        for res in (4, 6, 10, 11):
            store.set(Path(SOFTWARE, path.inst, res), None)

    def on_write(self, path: Path, value: Any) -> None:
        if path.res == 2:
            self.services.store_package(path.inst, value)

    def on_execute(self, path: Path, arg: str) -> None:
        actions = {4: self.services.install, 6: self.services.uninstall,
                   10: self.services.activate, 11: self.services.deactivate}
        action = actions.get(path.res)
        if action is None:
            raise MethodNotAllowed(f"{path} is not executable")
        action(path.inst)

    def on_delete(self, path: Path) -> None:
        self.services.remove(path.inst)


class InputHandler(ObjectHandler):
    """An object a service's input is mapped to: the server's writes go to that service."""

    def __init__(self, services: Services):
        self.services = services

    def on_write(self, path: Path, value: Any) -> None:
        self.services.write_input(path, value)


class MonitorHandler(ObjectHandler):
    """Object 35003: statistics computed when read."""

    def __init__(self, services: Services):
        self.services = services

    def on_read(self, path: Path, value: Any) -> Any:
        return self.services.monitor_value(path, value)

    def on_create(self, path: Path) -> None:
        raise MethodNotAllowed("35003 instances are created by the device")

    def on_delete(self, path: Path) -> None:
        raise MethodNotAllowed("35003 instances are removed by the device")
