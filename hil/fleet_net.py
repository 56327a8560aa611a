"""Where a fleet's nodes meet its gateway: the file's networks in a namespace of the fleet's own, or user networking.

With root, the ``linux-br`` networks the nodes name become bridges in one
network namespace created for the fleet (:class:`hil.infra.netns.NetworkNamespace`):
``lnxbr-0`` for the file's first network and so on, the host's address
(``host_address``) on each. Every emulated node gets a device there:

* a QEMU node a TAP device on its network's bridge (``tapN``), handed to
  QEMU as its LAN9118 (``-nic tap,fd=...``) with a MAC of its own
  (52:54:00 and the node's number);
* a Renode node, whose network is its SLIP line, a TUN device (``slN``)
  with a host route to its address, which the harness relays the line to;
* a simulated node a local address in the namespace for its socket.

Each is told its ``ipv4_address``/``ipv4_gateway`` after boot, and the
gateway's CoAP socket is made inside the namespace, at the address and port
the bootstrap commands name: those run as written, and registrations come
from the nodes' own addresses. The gateway's other APIs (REST, MQTT) stay
where the fleet puts them, on the host. ``native`` applications run inside
the namespace. Leaving the ``async with`` (a normal stop, Ctrl-C, a
failure) deletes the namespace with everything in it.

Without root (or with ``user_networking``) there is no namespace: each
emulated node gets QEMU user networking (or its SLIP bridge), bootstrap
addresses are rewritten to the gateway on the host's loopback, and
:attr:`FleetNetwork.fallback` says why, once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
from pathlib import Path
from typing import Any, Self

from .fleet_file import FleetError, FleetPlan, NodeSpec
from .infra.netns import NetworkNamespace, unavailable_reason

log = logging.getLogger("hil.fleet")

COAP_PORT = 5683
_COAP_URI = re.compile(r"coaps?://(\[[^\]]+\]|[^:/\s]+)(?::(\d+))?")


def coap_addresses(commands: list[str]) -> list[tuple[str, int]]:
    """The (host, port) of every ``coap://`` URI in ``commands``."""
    return [(m.group(1).strip("[]"), int(m.group(2) or COAP_PORT)) for c in commands for m in _COAP_URI.finditer(c)]


def node_mac(number: int) -> str:
    """A locally administered MAC in QEMU's range (52:54:00:...) for node ``number`` of a fleet."""
    return "52:54:00:" + ":".join(f"{(number >> shift) & 0xFF:02x}" for shift in (16, 8, 0))


class FleetNetwork:
    """``async with FleetNetwork(plan, log_dir=...) as net``; see the module docs."""

    def __init__(self, plan: FleetPlan, *, log_dir: str | Path | None = None, user_networking: bool = False):
        self.plan = plan
        self.log_dir = log_dir
        self.user_networking = user_networking
        self.namespace: NetworkNamespace | None = None
        self.fallback: str | None = None  # why the networks are not in a namespace, when there are networks
        self.gateway_address: tuple[str, int] | None = None  # where the gateway listens in the namespace
        self._numbers = {spec.name: n for n, spec in enumerate(plan, start=1)}
        self._applications: list[Any] = []

    @property
    def networked(self) -> list[NodeSpec]:
        """The nodes on one of the file's networks."""
        return [spec for spec in self.plan if spec.networks]

    async def __aenter__(self) -> Self:
        if not self.networked:
            return self
        self.gateway_address = self._gateway_address()
        reason = "--user-net was given" if self.user_networking else unavailable_reason()
        if reason:
            self.fallback = reason
            apps = f"; applications not started: {', '.join(a.name for a in self.plan.applications)}" \
                if self.plan.applications else ""
            log.warning("no network namespace for the fleet's networks: %s. Each node gets user networking instead,"
                        " its bootstrap addresses rewritten to the gateway%s", reason, apps)
            return self
        namespace = NetworkNamespace()
        await namespace.__aenter__()
        self.namespace = namespace
        try:
            used = {a.network.name: a.network for spec in self.networked for a in spec.networks}
            for net in used.values():
                await namespace.add_bridge(net.bridge, net.host)
            for app in self.plan.applications:
                try:
                    await asyncio.to_thread(namespace.start_process, f"app-{app.name}", app.command, log_dir=self.log_dir)
                except Exception as exc:
                    raise FleetError(f"{self.plan.source}: applications.{app.name}.image: {exc}") from None
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        log.info("fleet networks in namespace %s: %s", namespace.name,
                 ", ".join(f"{n.name} ({n.bridge}, host {n.host})" for n in used.values()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        namespace, self.namespace = self.namespace, None
        if namespace is not None:
            await namespace.__aexit__(None, None, None)

    def _gateway_address(self) -> tuple[str, int]:
        """Where the nodes' bootstrap commands say the gateway is: one port; one host when they agree."""
        found: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
        for spec in self.networked:
            for address in coap_addresses(spec.bootstrap):
                found[address].append(spec.name)
        ports = sorted({port for _, port in found})
        if len(ports) > 1:
            named = "; ".join(f"port {p}: {', '.join(sorted({n for (h, q), ns in found.items() if q == p for n in ns})[:3])}"
                              for p in ports)
            raise FleetError(f"{self.plan.source}: nodes.*.bootstrap: the nodes name the gateway on different ports"
                             f" ({named}); one gateway listens on one port")
        hosts = {host for host, _ in found}
        host_addresses = {str(a.network.host.ip) for spec in self.networked for a in spec.networks}
        if len(hosts) == 1 and hosts <= host_addresses:
            return hosts.pop(), ports[0]
        for host, port in found:
            if host not in host_addresses:
                log.warning("bootstrap address coap://%s:%d (%s) is no host address of the fleet's networks;"
                            " the gateway listens on every one of them", host, port, ", ".join(found[(host, port)][:3]))
        return "::", ports[0] if ports else COAP_PORT

    def describe(self) -> str | None:
        """One line on where the nodes' networks are (None for a fleet without networks)."""
        if self.namespace is not None:
            used = {a.network.name: a.network for spec in self.networked for a in spec.networks}
            nets = ", ".join(f"{n.name} on {n.bridge} (host {n.host})" for n in used.values())
            return f"namespace {self.namespace.name}: {nets}; look inside with: ip netns exec {self.namespace.name} ..."
        if self.fallback is not None:
            return f"user networking per node ({self.fallback})"
        return None

    @property
    def in_namespace(self) -> bool:
        return self.namespace is not None

    async def gateway_socket(self) -> socket.socket:
        """The gateway's CoAP socket, inside the namespace."""
        assert self.namespace is not None and self.gateway_address is not None
        host, port = self.gateway_address
        try:
            return await self.namespace.udp_socket(host, port)
        except Exception as exc:
            raise FleetError(f"cannot listen for the nodes on {host}:{port} in namespace {self.namespace.name}: {exc}") from None

    def gateway_host(self) -> str:
        """The host part of the gateway's URI in the namespace."""
        assert self.gateway_address is not None
        host = self.gateway_address[0]
        if host == "::":  # listening on all of them: name the first network's
            host = str(self.networked[0].networks[0].network.host.ip)
        return host

    async def node_options(self, spec: NodeSpec) -> dict[str, Any]:
        """What a node's target needs to be on its network (descriptors owned by the namespace; see :meth:`release`)."""
        if self.namespace is None or not spec.networks:
            return {}
        place = spec.networks[0]
        number = self._numbers[spec.name]
        ipv4 = (str(place.interface), str(place.gateway))
        if spec.kind == "qemu":
            fd = await self.namespace.open_tap(f"tap{number}", place.network.bridge)
            return {"net": "tap", "tap_fd": fd, "mac": node_mac(number), "ipv4": ipv4}
        if spec.kind == "renode":
            fd = await self.namespace.open_tun(f"sl{number}", place.address)
            return {"net": "slip", "slip_tun_fd": fd, "ipv4": ipv4}
        await self.namespace.add_local_address(place.address, place.network.bridge)
        namespace, address = self.namespace, str(place.address)
        return {"socket_factory": lambda: namespace.udp_socket(address, 0)}

    def release(self, options: dict[str, Any]) -> None:
        """Give back what :meth:`node_options` made (the node has stopped)."""
        if self.namespace is None:
            return
        for key in ("tap_fd", "slip_tun_fd"):
            if key in options:
                self.namespace.release(options[key])

