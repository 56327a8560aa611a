"""Fleets: a fleet file's nodes behind one gateway with all its northbound APIs.

The file is IoTNetEMU's ``config.yaml`` (:mod:`hil.fleet_file`), run as
IoTNetEMU runs it: a ``zephyr`` node boots its ``image`` on QEMU
``mps2-an385`` (or on Renode, when its board or ``--backend`` says so); a
``sim`` node is the in-process simulator, for scale. The networks the nodes
name are built in a network namespace of the fleet's own
(:mod:`hil.fleet_net`), where the gateway listens at the address the
bootstrap commands name; those are then sent to each node's shell as
written, in order, after its prompt.

Where a node cannot be on its network (no root, ``--user-net``, a node in
a file without networks), the ``coap://`` address in its bootstrap commands
is rewritten to where that node reaches the gateway (the host's loopback; for
QEMU user networking 10.0.2.2), with one log line per address rewritten. A
node without bootstrap commands gets ``embserve connector lwm2m server_add
<gateway> <name>``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from .boards import get_board
from .device.clock import VirtualClock
from .device.node import Node
from .fita.mqtt import MqttAuth
from .fleet_file import (  # noqa: F401 - the file format, re-exported for users of hil.fleet
    DEFAULT_SENSORS,
    FleetError,
    FleetPlan,
    NodeSpec,
    expand_braces,
    load_fleet,
    parse_fleet,
)
from .fleet_net import FleetNetwork
from .gateway.fleet_view import FleetView
from .gateway.rest import RestApi
from .gateway.sdf_mqtt import SdfMqttBridge
from .gateway.server import Gateway
from .infra.broker import Broker
from .infra.certs import ServerCertificate, make_server_certificate
from .infra.ports import is_loopback_host
from .secret import Secret, new_token_file, write_private
from .targets.base import Target, TargetConfig, get_target_class
from .targets.errors import BootstrapRefused

log = logging.getLogger("hil.fleet")

_COAP_URI = re.compile(r"coaps?://\S+")
MQTT_USER = "embserve-hil"  # the user the fleet's own broker lets in
START_CONCURRENCY = 64  # nodes booting at once: bounds the burst of registrations
EMULATOR_CONCURRENCY = 8  # emulators booting at once: each boot is a burst of CPU


@dataclass
class KindSummary:
    """One kind of node (``qemu``, ``renode``, ``sim``) in a :class:`FleetSummary`."""

    nodes: int = 0
    registered: int = 0
    services: int = 0
    readings_per_second: float = 0.0


@dataclass
class FleetSummary:
    nodes: int
    registered: int
    services: int
    readings_per_second: float
    kinds: dict[str, KindSummary] = field(default_factory=dict)  # the same figures per kind of node

    def line(self) -> str:
        text = (
            f"nodes {self.registered}/{self.nodes} registered, services {self.services}, "
            f"readings {self.readings_per_second:.1f}/s"
        )
        if set(self.kinds) - {"sim"}:
            text += " (" + "; ".join(
                f"{kind} {k.registered}/{k.nodes}, services {k.services}, {k.readings_per_second:.1f}/s"
                for kind, k in sorted(self.kinds.items())) + ")"
        return text


def rewrite_bootstrap(commands: list[str], gateway_uri: str) -> tuple[list[str], set[str]]:
    """Commands with every coap:// address replaced by ``gateway_uri``, and the addresses replaced."""
    replaced: set[str] = set()

    def swap(m: re.Match[str]) -> str:
        if m.group(0) != gateway_uri:
            replaced.add(m.group(0))
        return gateway_uri

    return [_COAP_URI.sub(swap, c) for c in commands], replaced


# --------------------------------------------------------------------------- running a fleet


class Fleet:
    """Broker (or a given one), gateway, SDF/MQTT bridge, REST API, the fleet's networks and nodes.

    ``async with Fleet(load_fleet(path)) as fleet``; ``fleet.summary()`` any time.
    ``specs`` is what :func:`load_fleet` returns (a plain list of node specs
    is a fleet without networks or applications). ``user_networking``: no
    namespace even as root (the fallback's behaviour, on purpose).
    ``emulator_options``: added to every emulated node's target options
    (e.g. ``qemu_icount``, ``qemu_extra_args``). ``log_dir`` also holds the
    nodes' console and emulator logs (default: a new temporary directory).
    """

    def __init__(
        self,
        specs: list[NodeSpec],
        *,
        mqtt: tuple[str, int] | None = None,
        host: str = "127.0.0.1",
        coap_port: int = 0,
        rest_port: int = 0,
        log_dir: str | Path | None = None,
        deploy_via: str = "lwm2m",
        clock: VirtualClock | None = None,
        api_token: Secret | None = None,
        insecure_open: bool = False,
        state_dir: str | Path | None = None,
        mqtt_auth: MqttAuth | None = None,
        user_networking: bool = False,
        emulator_options: Mapping[str, Any] | None = None,
    ):
        """Access (docs/gateway-apis.md): the broker started here always has a user with a generated
        password (written 0600 to ``state_dir/mqtt-password``) and, beyond loopback, TLS with a generated
        certificate; the REST API needs ``api_token`` beyond loopback (one is generated into
        ``state_dir/rest-token`` when none is given). ``insecure_open`` serves both open on purpose.
        ``mqtt_auth``: how to get into a broker given with ``mqtt``."""
        if not specs:
            raise FleetError("a fleet needs at least one node")
        self.specs = specs if isinstance(specs, FleetPlan) else FleetPlan(specs)
        self.host = host
        self._mqtt_given = mqtt
        self._coap_port = coap_port
        self._rest_port = rest_port
        self.log_dir = log_dir
        self.deploy_via = deploy_via
        self.clock = clock or VirtualClock()
        self.broker: Broker | None = None
        self.gateway: Gateway | None = None
        self.bridge: SdfMqttBridge | None = None
        self.rest: RestApi | None = None
        self.view: FleetView | None = None  # what the live fleet page shows
        self.nodes: dict[str, Node] = {}  # the simulated nodes
        self.targets: dict[str, Target] = {}  # the emulated nodes
        self.network: FleetNetwork | None = None
        self.user_networking = user_networking
        self.emulator_options = dict(emulator_options or {})
        self._node_options: dict[str, dict[str, Any]] = {}
        self._kinds = {spec.name: spec.kind for spec in self.specs}
        self._readings_seen: dict[str, int] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._last_readings = (0, time.monotonic())
        self._node_log_dir: Path | None = None
        self.deploy_failures: list[str] = []
        self.insecure_open = insecure_open
        self.beyond_loopback = not is_loopback_host(host)
        self.api_token = api_token
        self.api_token_file: Path | None = None  # set when the token was generated here
        self.generated_token: Secret | None = None  # shown once by the command, then forgotten
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.mqtt_auth = mqtt_auth
        self.mqtt_password_file: Path | None = None
        self.mqtt_certificate: ServerCertificate | None = None
        self._stack_cleanup: list[Callable[[], object]] = []  # generated credentials go when the fleet stops

    @property
    def mqtt_address(self) -> tuple[str, int]:
        if self._mqtt_given:
            return self._mqtt_given
        assert self.broker is not None
        return self.broker.host, self.broker.port

    def endpoints(self) -> dict[str, str]:
        """Where each API listens: CoAP (LwM2M), MQTT (SDF), REST."""
        assert self.gateway is not None and self.rest is not None
        host, port = self.mqtt_address
        scheme = "mqtts" if self.mqtt_auth is not None and self.mqtt_auth.uses_tls else "mqtt"
        return {"CoAP": self.gateway.uri, "MQTT": f"{scheme}://{host}:{port}", "REST": f"{self.rest.url}/api",
                "page": f"{self.rest.url}/fleet"}

    def access(self) -> list[str]:
        """How clients get in, one line each (no secret in them: they name the files that hold them)."""
        lines = []
        if self.mqtt_password_file is not None and self.mqtt_auth is not None:
            lines.append(f"MQTT user {self.mqtt_auth.username}, password in {self.mqtt_password_file} (0600)")
        if self.mqtt_certificate is not None:
            lines.append(f"MQTT TLS certificate {self.mqtt_certificate.cert}, SHA-256 fingerprint {self.mqtt_certificate.fingerprint}")
        if self.api_token is not None:
            where = f"token in {self.api_token_file}" if self.api_token_file else "the token given"
            lines.append(f"REST and the fleet page need 'Authorization: Bearer <token>' "
                         f"(a browser: any user, the token as password), {where}")
        if self.insecure_open and self.beyond_loopback:
            lines.append(f"WARNING: --insecure-open: REST and MQTT on {self.host} are open to anyone who can reach them")
        return lines

    def _prepare_access(self) -> None:
        """Generate what the APIs need (see __init__), before anything listens."""
        if self.insecure_open:
            return
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="embserve-hil-fleet-"))
            self._stack_cleanup.append(lambda: shutil.rmtree(self.state_dir or "", ignore_errors=True))
        state = self.state_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.api_token is None and self.beyond_loopback:
            self.api_token_file = state / "rest-token"
            self.api_token = self.generated_token = new_token_file(self.api_token_file)
        if self._mqtt_given is None:
            password = Secret(secrets.token_urlsafe(24))
            self.mqtt_password_file = state / "mqtt-password"
            write_private(self.mqtt_password_file, password.reveal().encode() + b"\n")
            if self.beyond_loopback:
                self.mqtt_certificate = make_server_certificate(state, self.host, name="mqtt")
            self.mqtt_auth = MqttAuth(MQTT_USER, password,
                                      ca_file=self.mqtt_certificate.cert if self.mqtt_certificate else None)

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.callback(lambda: [cleanup() for cleanup in self._stack_cleanup])
            self._prepare_access()
            self.network = await stack.enter_async_context(FleetNetwork(self.specs, log_dir=self.log_dir,
                                                                        user_networking=self.user_networking))
            if self._mqtt_given is None:
                auth = self.mqtt_auth
                users = {auth.username: auth.password} if auth is not None and auth.username and auth.password else None
                self.broker = await stack.enter_async_context(Broker(
                    log_dir=self.log_dir, host=self.host, users=users, tls=self.mqtt_certificate,
                    insecure_open=self.insecure_open))
            host, port = self.mqtt_address
            self.gateway = await stack.enter_async_context(await self._new_gateway())
            # nodes stop after the APIs close: the bridge's requests in flight must not meet closed nodes
            stack.push_async_callback(self._stop_nodes)
            self.bridge = await stack.enter_async_context(SdfMqttBridge(self.gateway, host, port, auth=self.mqtt_auth))
            self.view = FleetView(self.gateway)
            stack.callback(self.view.close)
            self.rest = await stack.enter_async_context(RestApi(
                self.gateway, self.host, self._rest_port, fleet_view=self.view,
                token=self.api_token, insecure_open=self.insecure_open))
            await self._start_nodes()
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._last_readings = (self.bridge.stats.readings, time.monotonic())
        self._readings_seen = dict(self.bridge.stats.readings_by_endpoint)
        return self

    @property
    def node_log_dir(self) -> Path:
        """Where the nodes' consoles and emulators log."""
        if self._node_log_dir is None:
            self._node_log_dir = Path(self.log_dir) if self.log_dir else Path(tempfile.mkdtemp(prefix="embserve-hil-fleet-"))
            self._node_log_dir.mkdir(parents=True, exist_ok=True)
        return self._node_log_dir

    async def _new_gateway(self) -> Gateway:
        """On the host (``host``, ``coap_port``), or inside the fleet's namespace where its nodes are."""
        assert self.network is not None
        if self.network.in_namespace:
            return Gateway(self.network.gateway_host(), sock=await self.network.gateway_socket())
        return Gateway(self.host, self._coap_port)

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _start_nodes(self) -> None:
        """Boot every node and send it its bootstrap commands; the first node that fails stops the start."""
        assert self.gateway is not None
        rewritten: collections.Counter[tuple[str, str]] = collections.Counter()
        gates = {"sim": asyncio.Semaphore(START_CONCURRENCY), "emulated": asyncio.Semaphore(EMULATOR_CONCURRENCY)}

        async def start(spec: NodeSpec) -> None:
            async with gates["emulated" if spec.emulated else "sim"]:
                if spec.emulated:
                    await self._start_emulated(spec, rewritten)
                else:
                    await self._start_simulated(spec, rewritten)

        try:
            async with asyncio.TaskGroup() as group:
                for spec in self.specs:
                    group.create_task(start(spec), name=f"start {spec.name}")
        except BaseExceptionGroup as group:
            failures = [e for e in group.exceptions if not isinstance(e, asyncio.CancelledError)]
            raise (failures or group.exceptions)[0] from None
        for (uri, to), count in sorted(rewritten.items()):
            log.warning("bootstrap address %s rewritten to the gateway's %s (%d node%s)", uri, to, count, "s" * (count != 1))

    def _bootstrap_for(self, spec: NodeSpec, gateway_uri: str, rewritten: collections.Counter[tuple[str, str]]) -> list[str]:
        """The node's commands: as written when it is on its network, else pointed at ``gateway_uri``."""
        if not spec.bootstrap:
            return [f"embserve connector lwm2m server_add {gateway_uri} {spec.name}"]
        assert self.network is not None
        if spec.networks and self.network.in_namespace:
            return list(spec.bootstrap)
        commands, replaced = rewrite_bootstrap(spec.bootstrap, gateway_uri)
        for uri in replaced:
            rewritten[(uri, gateway_uri)] += 1
        return commands

    async def _start_simulated(self, spec: NodeSpec, rewritten: collections.Counter[tuple[str, str]]) -> None:
        assert self.gateway is not None and self.network is not None
        options = await self.network.node_options(spec)
        node = Node(spec.name, clock=self.clock, sensors=spec.sensors, lifetime=spec.lifetime, host=self.host,
                    socket_factory=options.get("socket_factory"))
        self.nodes[spec.name] = node
        await node.start()
        for command in self._bootstrap_for(spec, self.gateway.uri, rewritten):
            out = await node.shell.run_line(command)
            if node.shell.last_status != 0:
                log.warning("%s: bootstrap command %r failed: %s", spec.name, command, out)

    async def _start_emulated(self, spec: NodeSpec, rewritten: collections.Counter[tuple[str, str]]) -> None:
        """Boot the node's image on its emulator, on its network, and bootstrap it; a :class:`FleetError` naming the field that failed."""
        assert self.gateway is not None and self.network is not None and spec.image is not None
        options = await self.network.node_options(spec)
        self._node_options[spec.name] = options
        config = TargetConfig(endpoint=spec.name, log_dir=self.node_log_dir, board=get_board(spec.board or "mps2_an385"),
                              # real time, as IoTNetEMU runs its nodes: they share networks and applications
                              firmware=spec.image, options={"virtual_time": False, **self.emulator_options, **options})
        target = get_target_class(spec.kind)(config)
        self.targets[spec.name] = target
        address_field = f"{spec.where}.networks.{spec.networks[0].network.name}.ipv4_address" if spec.networks else None
        try:
            await target.start()
        except BootstrapRefused as exc:
            raise FleetError(f"{address_field or spec.where}: {exc}") from None
        except Exception as exc:
            raise FleetError(f"{spec.where}.image: {spec.kind} did not bring {spec.image.name} up: {_first_line(exc)}"
                             f" (logs in {self.node_log_dir})") from None
        uri = target.device_server_uri(self.gateway.host, self.gateway.port)
        try:
            await target.run_bootstrap(self._bootstrap_for(spec, uri, rewritten))
        except BootstrapRefused as exc:
            raise FleetError(f"{spec.where}.bootstrap: {exc}") from None
        except Exception as exc:
            raise FleetError(f"{spec.where}.bootstrap: {_first_line(exc)} (console log {target.console.log_path})") from None

    async def _stop_nodes(self) -> None:
        nodes, self.nodes = list(self.nodes.values()), {}
        targets, self.targets = list(self.targets.values()), {}

        async def stop_target(target: Target) -> None:
            try:
                await target.__aexit__(None, None, None)
            finally:
                if self.network is not None:
                    self.network.release(self._node_options.pop(target.endpoint, {}))

        await asyncio.gather(*(n.aclose() for n in nodes), *(stop_target(t) for t in targets), return_exceptions=True)

    @property
    def node_names(self) -> list[str]:
        """Every node started (simulated and emulated)."""
        return [*self.nodes, *self.targets]

    async def wait_registered(self, timeout: float = 30.0) -> None:
        assert self.gateway is not None
        await asyncio.gather(*(self.gateway.wait_for_registration(name, timeout) for name in self.node_names))

    async def deploy_services(self, timeout: float = 30.0) -> int:
        """Deploy each node's ``services`` once it is registered; returns how many deployments succeeded."""
        from .faredge.deployer import Deployer

        jobs = [(spec.name, source) for spec in self.specs for source in spec.services]
        if not jobs:
            return 0
        assert self.gateway is not None
        broker = self.mqtt_address
        async with Deployer(self.gateway, via=self.deploy_via, broker=broker, rest_url=self.rest.url if self.rest else None,
                            api_token=self.api_token, mqtt_auth=self.mqtt_auth) as deployer:

            async def one(name: str, source: str) -> bool:
                try:
                    await self.gateway.wait_for_registration(name, timeout)
                    await deployer.deploy(source, name)
                    return True
                except Exception as exc:  # noqa: BLE001 - one node's failure is reported, the fleet goes on
                    self.deploy_failures.append(f"{name}: {source}: {exc}")
                    log.error("%s: deploying %s failed: %s", name, source, exc)
                    if self.view is not None:
                        self.view.error(name, f"deploying {source} failed: {exc}")
                    return False

            results = await asyncio.gather(*(one(n, s) for n, s in jobs))
        return sum(results)

    def summary(self) -> FleetSummary:
        """Registered nodes, services on them (/9 instances) and readings per second since the last summary, also per kind."""
        assert self.gateway is not None and self.bridge is not None
        regs = self.gateway.registrations
        count, since = self._last_readings
        now = time.monotonic()
        elapsed = now - since
        by_endpoint = self.bridge.stats.readings_by_endpoint
        kinds: dict[str, KindSummary] = {}
        for name in self.node_names:
            kind = kinds.setdefault(self._kinds.get(name, "sim"), KindSummary())
            kind.nodes += 1
            reg = regs.get(name)
            if reg is not None:
                kind.registered += 1
                kind.services += len(reg.available_instances.get(9, []))
            new = by_endpoint.get(name, 0) - self._readings_seen.get(name, 0)
            kind.readings_per_second += new / elapsed if elapsed > 0 else 0.0
        readings = self.bridge.stats.readings
        rate = (readings - count) / elapsed if elapsed > 0 else 0.0
        self._last_readings = (readings, now)
        self._readings_seen = dict(by_endpoint)
        return FleetSummary(
            sum(k.nodes for k in kinds.values()), sum(k.registered for k in kinds.values()),
            sum(k.services for k in kinds.values()), rate, kinds,
        )

    async def summaries(self, every: float) -> AsyncIterator[FleetSummary]:
        while True:
            await asyncio.sleep(every)
            yield self.summary()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
