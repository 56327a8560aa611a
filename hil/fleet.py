"""Fleets: many simulated nodes behind one gateway with all its northbound APIs.

A fleet file takes IoTNetEMU's ``config.yaml`` shape, so FITA's examples run
as they are, plus a few keys of this project::

    nodes:
      node{1..500}:                 # brace range: node1 ... node500 ({001..500} pads)
        type: zephyr                # IoTNetEMU keys (type, image, networks) are accepted and unused
        bootstrap:
          - 'embserve connector lwm2m server_add coap://10.10.12.254:5683 node{1..500}'
        sensors:                    # ours: name -> value or source spec (default temperature=21.5)
          temperature: 'wave:base=21,amplitude=2,period=60'
        lifetime: 300               # ours: registration lifetime, seconds
        services: [service.json]    # ours: deployed on each node once it registered
    networks: {...}                 # accepted and unused

Bootstrap commands run in each node's shell after boot. The ``coap://`` address
in them is the emulated network's gateway, which does not exist here: it is
rewritten to the real gateway's address, with one log line per address
rewritten. In a ranged entry, the entry's name (``node{1..500}``) or
``{name}`` in a command stands for each node's own name. A node without
bootstrap commands gets ``embserve connector lwm2m server_add <gateway> <name>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from .device.clock import VirtualClock
from .device.node import Node
from .gateway.fleet_view import FleetView
from .gateway.rest import RestApi
from .gateway.sdf_mqtt import SdfMqttBridge
from .gateway.server import Gateway
from .infra.broker import Broker

log = logging.getLogger("hil.fleet")

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_COAP_URI = re.compile(r"coaps?://\S+")
DEFAULT_SENSORS = {"temperature": 21.5}
START_CONCURRENCY = 64  # nodes booting at once: bounds the burst of registrations


class FleetError(ValueError):
    """A fleet file that cannot be used; the message names the file, the entry and the problem."""


@dataclass
class NodeSpec:
    name: str
    bootstrap: list[str]
    sensors: dict[str, Any]
    lifetime: int = 300
    services: list[str] = field(default_factory=list)


@dataclass
class FleetSummary:
    nodes: int
    registered: int
    services: int
    readings_per_second: float

    def line(self) -> str:
        return (
            f"nodes {self.registered}/{self.nodes} registered, services {self.services}, "
            f"readings {self.readings_per_second:.1f}/s"
        )


# --------------------------------------------------------------------------- fleet file


def expand_braces(name: str) -> list[str]:
    """``node{1..3}`` -> node1, node2, node3; ``n{01..10}`` keeps the padding; several ranges multiply."""
    ranges = list(_RANGE.finditer(name))
    if not ranges:
        return [name]
    choices: list[list[str]] = []
    for m in ranges:
        first, last = m.group(1), m.group(2)
        lo, hi = int(first), int(last)
        if hi < lo:
            raise FleetError(f"node name {name!r}: range {m.group(0)} runs backwards")
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        choices.append([str(i).zfill(width) for i in range(lo, hi + 1)])
    names = []
    for combo in itertools.product(*choices):
        out, pos = [], 0
        for m, value in zip(ranges, combo):
            out.append(name[pos : m.start()])
            out.append(value)
            pos = m.end()
        out.append(name[pos:])
        names.append("".join(out))
    return names


def load_fleet(path: str | Path) -> list[NodeSpec]:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the fleet file: {exc}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML: {exc}") from None
    return parse_fleet(doc, str(path))


def parse_fleet(doc: Any, source: str = "<fleet>") -> list[NodeSpec]:
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), dict) or not doc["nodes"]:
        raise FleetError(f"{source}: expected a mapping with a non-empty 'nodes:' mapping (IoTNetEMU config.yaml shape)")
    specs: list[NodeSpec] = []
    seen: dict[str, str] = {}
    for key, entry in doc["nodes"].items():
        key = str(key)
        where = f"{source}: nodes.{key}"
        entry = entry or {}
        if not isinstance(entry, dict):
            raise FleetError(f"{where}: expected a mapping of node settings, got {type(entry).__name__}")
        if entry.get("type", "zephyr") != "zephyr":
            raise FleetError(f"{where}: type {entry['type']!r} is not simulated here; only 'zephyr' nodes (embServe) are")
        bootstrap = entry.get("bootstrap") or []
        if not isinstance(bootstrap, list) or not all(isinstance(c, str) for c in bootstrap):
            raise FleetError(f"{where}.bootstrap: expected a list of shell command strings")
        sensors = _sensors(entry.get("sensors"), where)
        lifetime = entry.get("lifetime", 300)
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1:
            raise FleetError(f"{where}.lifetime: expected a positive whole number of seconds, got {lifetime!r}")
        services = entry.get("services") or []
        if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
            raise FleetError(f"{where}.services: expected a list of service.json files or image references")
        for name in expand_braces(key):
            if name in seen:
                raise FleetError(f"{where}: node {name!r} is also defined by nodes.{seen[name]}")
            seen[name] = key
            commands = [c.replace(key, name).replace("{name}", name) for c in bootstrap]
            specs.append(NodeSpec(name, commands, dict(sensors), lifetime, list(services)))
    return specs


def _sensors(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return dict(DEFAULT_SENSORS)
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return dict(v.split("=", 1) for v in value)
    raise FleetError(f"{where}.sensors: expected a mapping such as {{temperature: 21.5}} or a list of 'name=spec'")


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
    """Broker (or a given one), gateway, SDF/MQTT bridge, REST API and the fleet's nodes.

    ``async with Fleet(specs) as fleet``; ``fleet.summary()`` any time.
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
    ):
        if not specs:
            raise FleetError("a fleet needs at least one node")
        self.specs = specs
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
        self.nodes: dict[str, Node] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._last_readings = (0, time.monotonic())
        self.deploy_failures: list[str] = []

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
        return {"CoAP": self.gateway.uri, "MQTT": f"mqtt://{host}:{port}", "REST": f"{self.rest.url}/api",
                "page": f"{self.rest.url}/fleet"}

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._mqtt_given is None:
                self.broker = await stack.enter_async_context(Broker(log_dir=self.log_dir))
            host, port = self.mqtt_address
            self.gateway = await stack.enter_async_context(Gateway(self.host, self._coap_port))
            # nodes stop after the APIs close: the bridge's requests in flight must not meet closed nodes
            stack.push_async_callback(self._stop_nodes)
            self.bridge = await stack.enter_async_context(SdfMqttBridge(self.gateway, host, port))
            self.view = FleetView(self.gateway)
            stack.callback(self.view.close)
            self.rest = await stack.enter_async_context(RestApi(self.gateway, self.host, self._rest_port, fleet_view=self.view))
            await self._start_nodes()
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._last_readings = (self.bridge.stats.readings, time.monotonic())
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _start_nodes(self) -> None:
        assert self.gateway is not None
        rewritten: dict[str, int] = {}
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def start(spec: NodeSpec) -> None:
            commands, replaced = rewrite_bootstrap(spec.bootstrap, self.gateway.uri)
            for uri in replaced:
                rewritten[uri] = rewritten.get(uri, 0) + 1
            if not commands:
                commands = [f"embserve connector lwm2m server_add {self.gateway.uri} {spec.name}"]
            async with gate:
                node = Node(spec.name, clock=self.clock, sensors=spec.sensors, lifetime=spec.lifetime, host=self.host)
                self.nodes[spec.name] = node
                await node.start()
                for command in commands:
                    out = await node.shell.run_line(command)
                    if node.shell.last_status != 0:
                        log.warning("%s: bootstrap command %r failed: %s", spec.name, command, out)

        await asyncio.gather(*(start(spec) for spec in self.specs))
        for uri, count in sorted(rewritten.items()):
            log.warning("bootstrap address %s rewritten to the gateway's %s (%d node%s)", uri, self.gateway.uri, count, "s" * (count != 1))

    async def _stop_nodes(self) -> None:
        nodes, self.nodes = list(self.nodes.values()), {}
        await asyncio.gather(*(n.aclose() for n in nodes), return_exceptions=True)

    async def wait_registered(self, timeout: float = 30.0) -> None:
        assert self.gateway is not None
        await asyncio.gather(*(self.gateway.wait_for_registration(name, timeout) for name in self.nodes))

    async def deploy_services(self, timeout: float = 30.0) -> int:
        """Deploy each node's ``services`` once it is registered; returns how many deployments succeeded."""
        from .faredge.deployer import Deployer

        jobs = [(spec.name, source) for spec in self.specs for source in spec.services]
        if not jobs:
            return 0
        assert self.gateway is not None
        broker = self.mqtt_address
        async with Deployer(self.gateway, via=self.deploy_via, broker=broker, rest_url=self.rest.url if self.rest else None) as deployer:

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
        assert self.gateway is not None and self.bridge is not None
        regs = self.gateway.registrations
        registered = sum(1 for name in self.nodes if name in regs)
        services = sum(len(r.available_instances.get(9, [])) for name, r in regs.items() if name in self.nodes)
        count, since = self._last_readings
        now = time.monotonic()
        readings = self.bridge.stats.readings
        rate = (readings - count) / (now - since) if now > since else 0.0
        self._last_readings = (readings, now)
        return FleetSummary(len(self.nodes), registered, services, rate)

    async def summaries(self, every: float) -> AsyncIterator[FleetSummary]:
        while True:
            await asyncio.sleep(every)
            yield self.summary()
