"""A simulated embServe node: objects, sensors, UART console and shell, LwM2M client.

``async with Node("node1") as node`` boots it: the console shows Zephyr's boot
banner, ``embServe <version>`` and the prompt, the object store is built and
the node's UDP socket is bound, but the node talks to no server until it is
told to, by the shell bootstrap command
``embserve connector lwm2m server_add coap://HOST:PORT EP`` or by
:meth:`Node.connect` (which the command calls).

Reboot (``kernel reboot``, an Execute on /3/0/4, or :meth:`Node.reboot`)
de-registers, drops everything a real node keeps in RAM (the object store
with deployed services in /9 and /35003, observations, attributes, the
socket and so its port) and boots again. The configured LwM2M server and
endpoint survive, and the node registers again: this is what FITA's
IoTNetEMU gives, since it re-runs the bootstrap commands after every boot,
and what a node with the server in its settings partition does. Sensors are
the physical world and keep their sources.

Other modules hook into each boot with :meth:`Node.add_boot_hook`: the hook
gets the node after the fresh object store is built and before the node
registers, so it can plug object handlers (``node.objects.set_handler(9, ...)``)
and add instances that the registration should announce.

Many nodes in one process are cheap: one socket each, one idle task while
registered, timers on the (shareable) :class:`VirtualClock`, and sensor
sampling only for sources that change by themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .. import __version__
from ..fita.labels import DEVICE_TYPE  # FITA's node watcher looks for this in /3/0/17
from ..lwm2m.codecs import SENML_CBOR, SENML_FORMATS, SENML_JSON, TLV
from ..lwm2m.model import DEFINITIONS, Path, ResourceType
from ..lwm2m.transmission import TransmissionParameters
from ..lwm2m.security import MODE_NOSEC, MODE_PSK, SECURITY_OBJECT, PskCredential
from .client import (
    LWM2M_VERSION,
    ClientEvent,
    LwM2MClient,
    RegistrationFailed,
    SocketFactory,
    cancel_and_wait,
    parse_server_uri,
)
from ..service.metering import ServiceMeters
from .clock import TimerHandle, VirtualClock
from .console import Console
from .objects import MethodNotAllowed, ObjectHandler, ObjectStore
from .sensors import Sensor, Sensors, Source
from .shell import Shell
from .shell_commands import node_commands
from .software import Services, service_commands

ZEPHYR_VERSION = "3.5.0"
MANUFACTURER = "embserve-hil"
DEFAULT_SENSORS: Mapping[str, float] = {"temperature": 21.5}
ETHERNET_BEARER = 41  # /4/0/0 Network Bearer
SECURITY_URI = "/0/0/0"  # LwM2M Server URI of the node's one server account

TEMPERATURE_VALUE = Path(3303, 0, 5700)
NODE_FORMATS = (SENML_CBOR, SENML_JSON, TLV)  # preferred first: SenML CBOR on 1.1, as Zephyr's client does
REPORT_MODES = ("notify", "send")

BootHook = Callable[["Node"], "Awaitable[None] | None"]


class DeviceHandler(ObjectHandler):
    """/3/0: current time from the node's clock, reboot on /3/0/4."""

    def __init__(self, node: Node):
        self.node = node

    def on_read(self, path: Path, value: Any) -> Any:
        if path.res == 13:
            return int(self.node.epoch + self.node.clock.now())
        return value

    def on_write(self, path: Path, value: Any) -> None:
        if path.res == 13:
            self.node.epoch = value - self.node.clock.now()

    def on_execute(self, path: Path, arg: str) -> None:
        if path.res == 4:
            self.node.request_reboot()
            return
        raise MethodNotAllowed(f"{path} is not supported by the simulated node")


class ServerHandler(ObjectHandler):
    """/1/0: Registration Update Trigger (/1/0/8) sends an Update."""

    def __init__(self, node: Node):
        self.node = node

    def on_execute(self, path: Path, arg: str) -> None:
        if path.res == 8:
            if self.node.client is not None:
                self.node.client.trigger_update()
            return
        raise MethodNotAllowed(f"{path} is not supported by the simulated node")


class Node:
    def __init__(
        self,
        endpoint: str,
        *,
        clock: VirtualClock | None = None,
        board: str = "sim",
        sensors: Mapping[str, float | int | str | Source] | None = None,
        lifetime: int = 300,
        host: str = "127.0.0.1",
        seed: int | None = None,
        memory_kb: int = 256,
        epoch: float | None = None,
        request_timeout: float = 5.0,
        transmission: TransmissionParameters | None = None,
        sample_period: float = 1.0,
        log: logging.Logger | None = None,
        lwm2m_version: str = LWM2M_VERSION,
        formats: Sequence[int] = NODE_FORMATS,
        report: str = "notify",
        announce_format: bool = True,
        psk: PskCredential | None = None,
        socket_factory: SocketFactory | None = None,
        meter_services: bool = False,
    ):
        """``formats``: the structured content formats the node speaks, preferred first (SenML CBOR,
        SenML JSON, TLV; e.g. ``(SENML_JSON,)`` for a 1.1 client built without TLV); text and opaque
        always. ``report``: how service outputs reach the server, ``"notify"`` (observations) or
        ``"send"`` (LwM2M 1.1 Send to /dp, observers are not notified of them). ``announce_format``
        False: the root link names no format, as many clients do. ``psk``: register over DTLS-PSK
        (coaps:// servers only); the Security object /0 says so (mode 0, the identity and key).
        ``meter_services``: count what each service runs (instructions per slice, SDK calls) into
        :attr:`service_meters`; off, nothing is counted."""
        if not endpoint or any(c in endpoint for c in "&?=/ "):
            raise ValueError(f"bad endpoint name {endpoint!r}: non-empty, no spaces or '&?=/'")
        if lifetime < 1:
            raise ValueError(f"lifetime must be at least 1 s, got {lifetime}")
        if sample_period <= 0:
            raise ValueError(f"sample_period must be > 0 s, got {sample_period}")
        if report not in REPORT_MODES:
            raise ValueError(f"report={report!r}: choose {' or '.join(REPORT_MODES)}")
        if report == "send" and not any(f in SENML_FORMATS for f in formats):
            raise ValueError(f"report='send' needs SenML (Send carries SenML only), the node speaks {list(formats)}")
        self.lwm2m_version = lwm2m_version
        self.psk = psk
        self.formats = tuple(formats)
        self.report_mode = report
        self.announce_format = announce_format
        self.endpoint = endpoint
        self.clock = clock or VirtualClock()
        self.board = board
        self.lifetime = int(lifetime)
        self.host = host
        self.socket_factory = socket_factory
        self.seed = zlib.crc32(endpoint.encode()) if seed is None else seed
        self.memory_kb = memory_kb
        self.epoch = time.time() if epoch is None else epoch
        self.request_timeout = request_timeout
        self.transmission = transmission  # CoAP's pace for the node's own requests (RFC defaults when None)
        self.sample_period = sample_period
        self.serial = f"SIM-{zlib.crc32(endpoint.encode()):08X}"
        self.firmware_version = __version__
        self.zephyr_version = ZEPHYR_VERSION
        self.log = log or logging.getLogger(f"hil.device.{endpoint}")
        self.console = Console(endpoint)
        commands = node_commands(self)
        next(c for c in commands if c.name == "embserve").add(service_commands(lambda: self.services))
        self.shell = Shell(self.console, commands, uptime=lambda: self.uptime)
        self.services: Services | None = None  # the service runtime; rebuilt on every boot
        self.service_meters = ServiceMeters() if meter_services else None  # kept across reboots
        self.sensors = Sensors(DEFAULT_SENSORS if sensors is None else sensors, self.clock.now, self.seed)
        self.server: str | None = None  # survives reboots, like IoTNetEMU's bootstrap
        self.objects = ObjectStore()
        self.client: LwM2MClient | None = None
        self.boots = 0
        self._booted_at = 0.0
        self._boot_hooks: list[BootHook] = []
        self._registration_listeners: list[Callable[[ClientEvent], None]] = []
        self._sampler: TimerHandle | None = None
        self._sensor_unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._reboot_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> Node:
        if self._running:
            raise RuntimeError(f"node {self.endpoint} is already running")
        self._running = True
        await self._boot()
        return self

    async def aclose(self) -> None:
        """De-register (when registered), close the socket, stop every timer and task."""
        if not self._running:
            return
        self._running = False
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                await cancel_and_wait(task)
        await self._shutdown()
        await self.shell.close()

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def add_boot_hook(self, hook: BootHook) -> Callable[[], None]:
        """Run ``hook(node)`` on every boot from now on (see the module docstring)."""
        self._boot_hooks.append(hook)
        return lambda: self._boot_hooks.remove(hook) if hook in self._boot_hooks else None

    # ------------------------------------------------------------------ LwM2M

    async def connect(self, server_uri: str, endpoint: str | None = None) -> None:
        """Register to ``server_uri`` (coap://HOST:PORT; coaps:// with a PSK), as the bootstrap command does; returns at once."""
        parse_server_uri(server_uri, secured=self.psk is not None)
        if endpoint is not None:
            if not endpoint or any(c in endpoint for c in "&?=/ "):
                raise ValueError(f"bad endpoint name {endpoint!r}: non-empty, no spaces or '&?=/'")
            self.endpoint = endpoint
        if self.client is None:
            raise RuntimeError(f"node {self.endpoint} is not running: use 'async with Node(...) as node'")
        if self.server is not None and self.client.location:
            await self.client.stop(deregister=True)
        self.server = server_uri.rstrip("/")
        self.objects.set(SECURITY_URI, self.server)
        self._start_client()

    @property
    def registered(self) -> bool:
        return self.client is not None and self.client.registered.is_set()

    async def wait_registered(self, timeout: float = 10.0) -> None:
        if self.client is None:
            raise RuntimeError(f"node {self.endpoint} is not running")
        if self.server is None:
            raise RuntimeError(
                f"node {self.endpoint} has no LwM2M server: run "
                "'embserve connector lwm2m server_add coap://HOST:PORT EP' or node.connect() first"
            )
        await self.client.wait_registered(timeout)

    def add_registration_listener(self, listener: Callable[[ClientEvent], None]) -> Callable[[], None]:
        """Registration events ("registered", "updated", "deregistered", "failed"), across reboots."""
        self._registration_listeners.append(listener)
        if self.client is not None:
            self.client.add_listener(listener)

        def remove() -> None:
            if listener in self._registration_listeners:
                self._registration_listeners.remove(listener)
            if self.client is not None:
                self.client._listeners[:] = [l for l in self.client._listeners if l is not listener]

        return remove

    @property
    def address(self) -> tuple[str, int]:
        if self.client is None:
            raise RuntimeError(f"node {self.endpoint} is not running")
        return self.client.address

    @property
    def uptime(self) -> float:
        return self.clock.now() - self._booted_at

    # ------------------------------------------------------------------ reboot

    async def reboot(self) -> None:
        """De-register, lose RAM state, boot again and (with a server configured) register again."""
        if not self._running:
            raise RuntimeError(f"node {self.endpoint} is not running")
        async with self._reboot_lock:
            await self._shutdown()
            await self._boot()

    def request_reboot(self) -> None:
        """Reboot soon, after the current request or command has been answered."""
        self._spawn(self.reboot(), "reboot")

    # ------------------------------------------------------------------ boot

    async def _boot(self) -> None:
        self.boots += 1
        self._booted_at = self.clock.now()
        self.shell.end_line()
        self.console.print(f"*** Booting Zephyr OS build v{self.zephyr_version} ***")
        self.objects = ObjectStore()
        self.client = LwM2MClient(
            self.endpoint,
            self.objects,
            self.clock,
            lifetime=self.lifetime,
            host=self.host,
            socket_factory=self.socket_factory,
            request_timeout=self.request_timeout,
            transmission=self.transmission,
            console_log=lambda level, message: self.shell.log(level, "net_lwm2m_rd_client", message),
            log=self.log,
            lwm2m_version=self.lwm2m_version,
            formats=self.formats,
            announce=self.announce_format,
            psk=self.psk,
        )
        for listener in self._registration_listeners:
            self.client.add_listener(listener)
        await self.client.open()
        self._build_objects(self.client.address[0])
        self.services = Services(self)
        self.services.attach()
        self._start_sensors()
        for hook in list(self._boot_hooks):
            result = hook(self)
            if inspect.isawaitable(result):
                await result
        self.console.print(f"embServe {self.firmware_version}")
        if not self.shell.busy:
            self.shell.show_prompt()
        if self.server is not None:
            self._start_client()

    async def _shutdown(self) -> None:
        self._stop_sensors()
        services, self.services = self.services, None
        if services is not None:
            services.close()
        client, self.client = self.client, None
        if client is not None:
            await client.close(deregister=True)

    def _start_client(self) -> None:
        assert self.client is not None and self.server is not None
        self.shell.log(
            "inf",
            "net_lwm2m_rd_client",
            f"RD Client started with endpoint '{self.endpoint}' with client lifetime {self.lifetime}",
        )
        self.client.start(self.server, self.endpoint)

    def _build_objects(self, ip: str) -> None:
        store = self.objects
        # LwM2M Security: what the node secures its server's CoAP with; never readable by that server
        store.add_object(SECURITY_OBJECT, fixed=True)
        psk = self.psk
        store.add_instance(SECURITY_OBJECT, 0, {
            0: self.server or "", 1: False, 2: MODE_PSK if psk else MODE_NOSEC,
            3: psk.identity_bytes if psk else b"", 4: b"", 5: psk.key_bytes if psk else b"", 10: 1,
        })
        store.add_object(1, ServerHandler(self), fixed=True)
        store.add_instance(1, 0, {0: 1, 1: self.lifetime, 6: False, 7: "U", 8: None})
        store.add_object(3, DeviceHandler(self), fixed=True)
        memory = self.memory_kb if DEFINITIONS[3].resources[21].type is ResourceType.INTEGER else str(self.memory_kb)
        store.add_instance(
            3,
            0,
            {
                0: MANUFACTURER,
                1: self.board,
                2: self.serial,
                3: self.firmware_version,
                4: None,
                11: [0],
                13: 0,  # computed on read from the node's clock
                16: "U",
                17: DEVICE_TYPE,
                21: memory,
            },
        )
        store.add_object(4, fixed=True)
        store.add_instance(4, 0, {0: ETHERNET_BEARER, 1: [ETHERNET_BEARER], 2: 0, 4: [ip]})
        store.add_object(15, fixed=True)
        if self.sensors:
            # One capability instance listing every sensor, as embServe reports it
            # (FITA's watcher reads the first DevCapMgmt instance only).
            sensors = list(self.sensors.values())
            store.add_instance(15, 0, {0: ";".join(str(x.id) for x in sensors), 1: 0,
                                       2: ", ".join(x.name for x in sensors), 4: True})
        if "temperature" in self.sensors:
            store.add_object(3303)
            value = self.sensors["temperature"].read()
            store.add_instance(3303, 0, {5700: value, 5701: "Cel", 5601: value, 5602: value})
        store.add_object(9)
        store.add_object(35003)

    # ------------------------------------------------------------------ sensors → objects

    def _start_sensors(self) -> None:
        if "temperature" not in self.sensors:
            return
        sensor = self.sensors["temperature"]
        self._sensor_unsubscribe.append(sensor.add_listener(self._on_source_changed))
        self._schedule_sample(sensor)

    def _stop_sensors(self) -> None:
        for unsubscribe in self._sensor_unsubscribe:
            unsubscribe()
        self._sensor_unsubscribe.clear()
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None

    def _on_source_changed(self, sensor: Sensor) -> None:
        self._publish(sensor)
        self._schedule_sample(sensor)

    def _schedule_sample(self, sensor: Sensor) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if sensor.source.varies:
            self._sampler = self.clock.call_later(self.sample_period, lambda: self._sample(sensor))

    def _sample(self, sensor: Sensor) -> None:
        self._sampler = None
        self._publish(sensor)
        self._schedule_sample(sensor)

    def _publish(self, sensor: Sensor) -> None:
        """The sensor's reading into /3303/0 (value, min, max); observers hear of a change."""
        if not self.objects.exists(TEMPERATURE_VALUE):
            return
        if self.services is not None and self.services.owns(TEMPERATURE_VALUE):
            return  # a service's output owns the instance now
        value = sensor.read()
        self.objects.set(TEMPERATURE_VALUE, value)
        low, high = self.objects.get("/3303/0/5601"), self.objects.get("/3303/0/5602")
        if value < low:
            self.objects.set("/3303/0/5601", value)
        if value > high:
            self.objects.set("/3303/0/5602", value)

    def report(self, path: Path, value: Any) -> None:
        """A new reading at ``path`` (a service output): stored, and told to the server as configured.

        ``notify``: observers are notified (even when the value did not move);
        ``send``: a Send carries it to the server, while registered, and
        observers are not notified of it.
        """
        client = self.client
        if self.report_mode == "send" and client is not None and client.send_format is not None:
            self.objects.set(path, value, notify=False)
            if client.registered.is_set():
                self._spawn(self._send({path: self.objects.get(path)}), f"send {path}")
            return
        self.objects.set(path, value, always_notify=True)

    async def _send(self, content: dict[Path, Any]) -> None:
        if self.client is None:
            return
        try:
            await self.client.send(content)
        except RegistrationFailed as exc:
            self.shell.log("wrn", "net_lwm2m_send", str(exc))

    def republish_sensors(self) -> None:
        """Write the board sensor's reading again (after a service gave /3303/0 back)."""
        if "temperature" in self.sensors:
            self._publish(self.sensors["temperature"])

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.endpoint}-{name}")
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.log.error("node %s: %s failed: %r", self.endpoint, name, t.exception())

        task.add_done_callback(done)

    def __repr__(self) -> str:
        state = self.client.state.value if self.client else "off"
        return f"<Node {self.endpoint} board={self.board} {state}>"
