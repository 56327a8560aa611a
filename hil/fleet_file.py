"""Fleet files: IoTNetEMU's ``config.yaml``, read as IoTNetEMU reads it, plus a few keys of this project.

FITA's examples run as they are::

    nodes:
      node1:
        type: 'zephyr'                    # the node's image on an emulator (QEMU mps2-an385 by default)
        image: 'images/embserve.elf'      # relative to the fleet file
        bootstrap:                        # sent to the node's shell as written, in order, after its prompt
          - 'embserve connector lwm2m server_add coap://10.10.12.254:5683 node1'
        networks:
          linux-br:
            ipv4_address: 10.10.12.1
            ipv4_gateway: 10.10.12.254
    applications:
      proxy:
        type: 'native'                    # a process inside the fleet's network namespace
        image: 'socat UDP4-LISTEN:5683,fork,so-bindtodevice=lnxbr-0,reuseaddr UDP4:172.16.5.30:30009'
    networks:
      linux-br:
        type: 'linux-br'                  # a Linux bridge (lnxbr-0 for the first, lnxbr-1...)
        host_address: 10.10.12.254        # the host's side; /24 unless written 10.10.12.254/16

Keys of this project, all optional:

``type: 'sim'``
    a simulated node (the in-process embServe simulator); the default for a
    node that names no ``image``. ``--simulate`` makes every node one.
``board``, ``backend``
    a board from the catalog (default ``mps2_an385``) and the emulator that
    runs it (``qemu`` or ``renode``; default: the first the board supports).
``sensors``, ``lifetime``, ``services``
    sensor values or sources (default ``temperature: 21.5``; simulated nodes),
    registration lifetime in seconds (simulated nodes), and service.json
    files or image references deployed on the node once it registered.
Brace ranges
    ``node{1..500}`` (``{001..500}`` pads) makes one node per number; in its
    commands the entry's name, or ``{name}``, stands for each node's own name,
    and a ranged ``ipv4_address`` such as ``10.10.12.{1..500}`` gives each its
    own address. A node on a network without ``ipv4_address`` gets the next
    free address of the network.

Everything is checked before anything starts; a problem is one
:class:`FleetError` line naming the file, the node and the field.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .boards import BoardError, get_board

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
DEFAULT_SENSORS = {"temperature": 21.5}
NODE_TYPES = ("zephyr", "sim")
EMULATORS = ("qemu", "renode")
NETWORK_TYPES = ("linux-br",)
APPLICATION_TYPES = ("native",)
DEFAULT_BOARD = "mps2_an385"  # IoTNetEMU's machine
DEFAULT_PREFIX = 24
EM_ARM = 40


class FleetError(ValueError):
    """A fleet file that cannot be used; the message names the file, the entry and the problem."""


@dataclass(frozen=True)
class NetworkSpec:
    """One entry of ``networks:``."""

    name: str
    type: str
    host: ipaddress.IPv4Interface | None  # host_address with the network's prefix (needed once a node is on it)
    bridge: str  # the bridge's name in the namespace (IoTNetEMU's lnxbr-<n>)
    source: str = ""  # "fleet.yaml: networks.linux-br", for messages

    @property
    def network(self) -> ipaddress.IPv4Network:
        assert self.host is not None
        return self.host.network


@dataclass(frozen=True)
class NodeAddress:
    """A node's place on one network."""

    network: NetworkSpec
    address: ipaddress.IPv4Address
    gateway: ipaddress.IPv4Address

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.address}/{self.network.network.prefixlen}")


@dataclass
class NodeSpec:
    name: str
    bootstrap: list[str]
    sensors: dict[str, Any]
    lifetime: int = 300
    services: list[str] = field(default_factory=list)
    type: str = "sim"  # "zephyr": its image on an emulator; "sim": the simulator
    image: Path | None = None
    board: str | None = None
    backend: str | None = None  # "qemu" or "renode" for zephyr nodes
    networks: list[NodeAddress] = field(default_factory=list)
    where: str = ""  # "fleet.yaml: nodes.node{1..3} (node2)", for messages

    @property
    def emulated(self) -> bool:
        return self.type == "zephyr"

    @property
    def kind(self) -> str:
        """What runs the node: ``qemu``, ``renode`` or ``sim``."""
        if not self.emulated:
            return "sim"
        return self.backend or "qemu"


@dataclass(frozen=True)
class ApplicationSpec:
    name: str
    type: str
    command: str


class FleetPlan(list):
    """The nodes of a fleet file (a ``list[NodeSpec]``) with its networks and applications."""

    def __init__(self, nodes: list[NodeSpec] = (), *, networks: dict[str, NetworkSpec] | None = None,
                 applications: list[ApplicationSpec] | None = None, source: str = "<fleet>"):
        super().__init__(nodes)
        self.networks = networks or {}
        self.applications = applications or []
        self.source = source


# --------------------------------------------------------------------------- reading


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


def load_fleet(path: str | Path, *, simulate: bool = False, backend: str | None = None) -> FleetPlan:
    """Read and check a fleet file; images are looked up relative to it."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the fleet file: {exc}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML: {exc}") from None
    return parse_fleet(doc, str(path), base=path.resolve().parent, simulate=simulate, backend=backend)


def parse_fleet(doc: Any, source: str = "<fleet>", *, base: Path | None = None, simulate: bool = False,
                backend: str | None = None) -> FleetPlan:
    """Check a fleet document (see the module docs).

    ``simulate``: every node is a simulated one (images are not looked at).
    ``backend``: the emulator for every ``zephyr`` node (``--backend``).
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), dict) or not doc["nodes"]:
        raise FleetError(f"{source}: expected a mapping with a non-empty 'nodes:' mapping (IoTNetEMU config.yaml shape)")
    if backend is not None and backend not in EMULATORS:
        raise FleetError(f"--backend {backend!r}: expected one of {', '.join(EMULATORS)}")
    networks = _networks(doc.get("networks"), source)
    applications = _applications(doc.get("applications"), source)
    base = base or Path.cwd()
    specs: list[NodeSpec] = []
    seen: dict[str, str] = {}
    pending: list[tuple[NodeSpec, str, Any]] = []  # addresses are checked once every node is known
    for key, entry in doc["nodes"].items():
        key = str(key)
        entry = entry or {}
        if not isinstance(entry, dict):
            raise FleetError(f"{source}: nodes.{key}: expected a mapping of node settings, got {type(entry).__name__}")
        names = expand_braces(key)
        common = _node_settings(entry, f"{source}: nodes.{key}", base, simulate, backend)
        for index, name in enumerate(names):
            if name in seen:
                raise FleetError(f"{source}: nodes.{key}: node {name!r} is also defined by nodes.{seen[name]}")
            seen[name] = key
            where = f"{source}: nodes.{key}" + (f" ({name})" if name != key else "")
            spec = NodeSpec(name, [c.replace(key, name).replace("{name}", name) for c in common["bootstrap"]],
                            dict(common["sensors"]), common["lifetime"], list(common["services"]),
                            "sim" if simulate else common["type"], common["image"], common["board"], common["backend"],
                            where=where)
            specs.append(spec)
            for net_name, settings in common["networks"].items():
                pending.append((spec, net_name, (settings, index, len(names))))
    _place_nodes(pending, networks)
    on_network = next((spec for spec in specs if spec.networks), None)
    if on_network is not None:
        name = on_network.networks[0].network.name
        for spec in specs:
            if not spec.networks:
                raise FleetError(f"{spec.where}.networks: the gateway meets the nodes on their networks ({on_network.name}"
                                 f" is on {name}), and this node is on none; name one, e.g. networks: {{{name}: {{}}}}"
                                 f" for an automatic address")
    if simulate:  # checked, then left aside: simulated nodes meet the gateway on the host, as without networks
        for spec in specs:
            spec.networks = []
    return FleetPlan(specs, networks=networks, applications=applications, source=source)


def _node_settings(entry: dict[str, Any], where: str, base: Path, simulate: bool, backend: str | None) -> dict[str, Any]:
    kind = entry.get("type", "zephyr" if "image" in entry else "sim")
    if kind not in NODE_TYPES:
        raise FleetError(f"{where}.type: {kind!r} is not a node type here; expected 'zephyr' (its image on an"
                         f" emulator) or 'sim' (the simulator)")
    bootstrap = entry.get("bootstrap") or []
    if not isinstance(bootstrap, list) or not all(isinstance(c, str) for c in bootstrap):
        raise FleetError(f"{where}.bootstrap: expected a list of shell command strings")
    lifetime = entry.get("lifetime", 300)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < 1:
        raise FleetError(f"{where}.lifetime: expected a positive whole number of seconds, got {lifetime!r}")
    services = entry.get("services") or []
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise FleetError(f"{where}.services: expected a list of service.json files or image references")
    nets = entry.get("networks") or {}
    if not isinstance(nets, dict) or not all(isinstance(v, dict) or v is None for v in nets.values()):
        raise FleetError(f"{where}.networks: expected a mapping of network name to {{ipv4_address, ipv4_gateway}}")
    if len(nets) > 1:
        raise FleetError(f"{where}.networks: a node has one network interface; it names {len(nets)} networks"
                         f" ({', '.join(map(str, nets))})")
    settings: dict[str, Any] = {
        "type": kind, "bootstrap": bootstrap, "lifetime": lifetime, "services": services,
        "sensors": _sensors(entry.get("sensors"), where), "networks": {str(k): v or {} for k, v in nets.items()},
        "image": None, "board": None, "backend": None,
    }
    if kind == "zephyr" and not simulate:
        settings["image"] = _image(entry.get("image"), f"{where}.image", base)
        settings["board"], settings["backend"] = _board_and_backend(entry, where, backend)
    return settings


def _image(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise FleetError(f"{where}: a 'zephyr' node needs the path of its firmware image (an ARM ELF), e.g. images/embserve.elf")
    path = (base / value).resolve()
    problem = elf_problem(path)
    if problem:
        raise FleetError(f"{where}: {value!r} ({path}) {problem}")
    return path


def elf_problem(path: Path) -> str | None:
    """What keeps ``path`` from being an image an ARM emulator can load, or None."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except FileNotFoundError:
        return "does not exist"
    except IsADirectoryError:
        return "is a directory, not an ELF file"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if header[:4] != b"\x7fELF":
        return "is not an ELF file"
    if header[4] != 1:
        return "is a 64-bit ELF file, not a 32-bit ARM one"
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    if machine != EM_ARM:
        return f"is an ELF file for another machine (e_machine {machine}), not ARM ({EM_ARM})"
    return None


def _board_and_backend(entry: dict[str, Any], where: str, forced: str | None) -> tuple[str, str]:
    name = entry.get("board", DEFAULT_BOARD)
    if not isinstance(name, str):
        raise FleetError(f"{where}.board: expected a board name, got {name!r}")
    try:
        board = get_board(name)
    except BoardError as exc:
        raise FleetError(f"{where}.board: {exc}") from None
    wanted = forced or entry.get("backend")
    if wanted is not None:
        field_name = "--backend" if forced else "backend"
        if wanted not in EMULATORS:
            raise FleetError(f"{where}.{field_name}: {wanted!r} is not an emulator here; expected one of {', '.join(EMULATORS)}")
        if not board.supports(wanted):
            raise FleetError(f"{where}.board: board {name} does not run on {wanted} (its backends: {', '.join(board.backends)})")
        return name, wanted
    for backend in board.backends:
        if backend in EMULATORS:
            return name, backend
    raise FleetError(f"{where}.board: board {name} runs on no emulator (its backends: {', '.join(board.backends)})")


def _sensors(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return dict(DEFAULT_SENSORS)
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return dict(v.split("=", 1) for v in value)
    raise FleetError(f"{where}.sensors: expected a mapping such as {{temperature: 21.5}} or a list of 'name=spec'")


def _networks(value: Any, source: str) -> dict[str, NetworkSpec]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FleetError(f"{source}: networks: expected a mapping of network name to its settings")
    networks: dict[str, NetworkSpec] = {}
    for index, (name, entry) in enumerate(value.items()):
        where = f"{source}: networks.{name}"
        entry = entry or {}
        kind = entry.get("type")
        if kind not in NETWORK_TYPES:
            raise FleetError(f"{where}.type: {kind!r} is not a network type here; expected {' or '.join(map(repr, NETWORK_TYPES))}")
        host = entry.get("host_address")
        if host is None:
            networks[str(name)] = NetworkSpec(str(name), kind, None, f"lnxbr-{index}", where)
            continue
        try:
            interface = ipaddress.IPv4Interface(str(host) if "/" in str(host) else f"{host}/{DEFAULT_PREFIX}")
        except ValueError:
            raise FleetError(f"{where}.host_address: {host!r} is not an IPv4 address (optionally with /prefix)") from None
        if interface.ip in (interface.network.network_address, interface.network.broadcast_address):
            raise FleetError(f"{where}.host_address: {host} is the network's own or broadcast address in {interface.network}")
        networks[str(name)] = NetworkSpec(str(name), kind, interface, f"lnxbr-{index}", where)
    return networks


def _applications(value: Any, source: str) -> list[ApplicationSpec]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise FleetError(f"{source}: applications: expected a mapping of application name to its settings")
    apps = []
    for name, entry in value.items():
        where = f"{source}: applications.{name}"
        entry = entry or {}
        kind = entry.get("type")
        if kind not in APPLICATION_TYPES:
            raise FleetError(f"{where}.type: {kind!r} is not an application type here; expected 'native' (a process"
                             f" inside the fleet's network namespace)")
        command = entry.get("image")
        if not isinstance(command, str) or not command.strip():
            raise FleetError(f"{where}.image: expected the command line to run, e.g. 'socat UDP4-LISTEN:5683,fork ...'")
        apps.append(ApplicationSpec(str(name), kind, command))
    return apps


def _address(value: Any, where: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise FleetError(f"{where}: {value!r} is not an IPv4 address") from None


def _place_nodes(pending: list[tuple[NodeSpec, str, Any]], networks: dict[str, NetworkSpec]) -> None:
    """Give every node its address on its network: the one written (or its share of a range), else the next free one."""
    taken: dict[tuple[str, ipaddress.IPv4Address], str] = {}
    automatic: list[tuple[NodeSpec, NetworkSpec, ipaddress.IPv4Address]] = []
    for spec, net_name, (settings, index, count) in pending:
        where = f"{spec.where}.networks.{net_name}"
        net = networks.get(net_name)
        if net is None:
            have = ", ".join(networks) or "none"
            raise FleetError(f"{where}: no network {net_name!r} in the file's networks: (defined: {have})")
        if net.host is None:
            raise FleetError(f"{net.source}.host_address: missing, and node {spec.name} is on this network; the host's"
                             f" address on it, e.g. 10.10.12.254")
        gateway = _address(settings["ipv4_gateway"], f"{where}.ipv4_gateway") if settings.get("ipv4_gateway") else net.host.ip
        if gateway not in net.network:
            raise FleetError(f"{where}.ipv4_gateway: {gateway} is outside network {net_name} ({net.network})")
        written = settings.get("ipv4_address")
        if written is None:
            automatic.append((spec, net, gateway))
            continue
        values = expand_braces(str(written))
        if len(values) not in (1, count) or (len(values) == 1 and count > 1):
            raise FleetError(f"{where}.ipv4_address: {written!r} gives {len(values)} addresses for {count} nodes"
                             f" (use a range such as 10.10.12.{{1..{count}}}, or leave it out for automatic addresses)")
        address = _address(values[index], f"{where}.ipv4_address")
        _check_place(spec, net, address, where, taken)
        spec.networks.append(NodeAddress(net, address, gateway))
    for spec, net, gateway in automatic:
        address = next((a for a in net.network.hosts() if a != net.host.ip and (net.name, a) not in taken), None)
        if address is None:
            raise FleetError(f"{spec.where}.networks.{net.name}: no free address left in {net.network}")
        taken[(net.name, address)] = spec.name
        spec.networks.append(NodeAddress(net, address, gateway))


def _check_place(spec: NodeSpec, net: NetworkSpec, address: ipaddress.IPv4Address, where: str,
                 taken: dict[tuple[str, ipaddress.IPv4Address], str]) -> None:
    field_where = f"{where}.ipv4_address"
    if address not in net.network:
        raise FleetError(f"{field_where}: {address} is outside network {net.name} ({net.network})")
    if address in (net.network.network_address, net.network.broadcast_address):
        raise FleetError(f"{field_where}: {address} is the network's own or broadcast address ({net.network})")
    if address == net.host.ip:
        raise FleetError(f"{field_where}: {address} is the host's address on {net.name} (host_address)")
    other = taken.get((net.name, address))
    if other is not None:
        raise FleetError(f"{field_where}: {address} is node {other}'s address too")
    taken[(net.name, address)] = spec.name
