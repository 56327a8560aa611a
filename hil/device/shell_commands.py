"""The node's shell commands: ``embserve``, ``kernel`` and ``sensor``, as the firmware has them.

:func:`node_commands` builds them over the few things of a node they use
(:class:`ShellNode`); the node hands them to its :class:`~hil.device.shell.Shell`.
"""

from __future__ import annotations

import errno
from typing import Protocol

from .client import LwM2MClient, ServerURIError, parse_server_uri
from .sensors import Sensor, SensorError, Sensors, make_source
from .shell import Command, Shell, ShellError


class ShellNode(Protocol):
    """What the commands read and drive on a node."""

    endpoint: str
    server: str | None
    client: LwM2MClient | None
    firmware_version: str
    zephyr_version: str
    sensors: Sensors
    seed: int

    @property
    def uptime(self) -> float: ...

    async def connect(self, server_uri: str, endpoint: str | None = None) -> None: ...

    async def reboot(self) -> None: ...


def node_commands(node: ShellNode) -> list[Command]:
    """The embServe node's command set: ``embserve``, ``kernel``, ``sensor``."""

    async def server_add(shell: Shell, args: list[str]) -> int:
        uri, endpoint = args[1], args[2]
        try:
            parse_server_uri(uri, secured=getattr(node, "psk", None) is not None)
        except ServerURIError as exc:
            raise ShellError(f"server_add: {exc}") from None
        if not endpoint.strip() or any(c in endpoint for c in "&?=/ "):
            raise ShellError(f"server_add: bad endpoint name {endpoint!r}: no spaces or '&?=/'")
        await node.connect(uri, endpoint)
        shell.print(f"LwM2M server {uri} added, endpoint '{endpoint}'")
        return 0

    def status(shell: Shell, args: list[str]) -> int:
        client = node.client
        if node.server is None or client is None:
            shell.print("no LwM2M server configured")
            return 0
        shell.print(f"server:   {node.server}")
        shell.print(f"endpoint: {node.endpoint}")
        shell.print(f"state:    {client.state.value}")
        if client.location:
            shell.print(f"location: /{'/'.join(client.location)}")
        shell.print(f"lifetime: {client.lifetime} s")
        if client.last_error:
            shell.print(f"last error: {client.last_error}")
        return 0

    def version(shell: Shell, args: list[str]) -> int:
        shell.print(f"embServe {node.firmware_version}")
        return 0

    def kernel_version(shell: Shell, args: list[str]) -> int:
        shell.print(f"Zephyr version {node.zephyr_version}")
        return 0

    def uptime(shell: Shell, args: list[str]) -> int:
        shell.print(f"Uptime: {int(node.uptime * 1000)} ms")
        return 0

    async def reboot(shell: Shell, args: list[str]) -> int:
        await node.reboot()
        return 0

    def sensor_set(shell: Shell, args: list[str]) -> int:
        name, text = args[1], args[2]
        sensor = _sensor(name)
        try:
            value = float(text)
        except ValueError:
            raise ShellError(f"sensor set: value {text!r} for {name} is not a number") from None
        sensor.set(value)
        shell.print(f"{name} = {value:g} {sensor.units}".rstrip())
        return 0

    def sensor_source(shell: Shell, args: list[str]) -> int:
        name, spec = args[1], args[2]
        sensor = _sensor(name)
        try:
            sensor.source = make_source(spec, seed=node.seed, what=f"sensor {name!r}")
        except SensorError as exc:
            raise ShellError(f"sensor source: {exc}") from None
        shell.print(f"{name}: {sensor.source}")
        return 0

    def sensor_get(shell: Shell, args: list[str]) -> int:
        sensor = _sensor(args[1])
        shell.print(f"{sensor.name} = {sensor.read():g} {sensor.units}".rstrip())
        return 0

    def sensor_list(shell: Shell, args: list[str]) -> int:
        if not node.sensors:
            shell.print("no sensors")
        for sensor in node.sensors.values():
            shell.print(f"{sensor.name} (id {sensor.id}): {sensor.source}")
        return 0

    def _sensor(name: str) -> Sensor:
        if name not in node.sensors:
            known = ", ".join(node.sensors) or "none"
            raise ShellError(
                f"sensor: no sensor named {name!r} on this node (sensors: {known})",
                errno.ENODEV,
            )
        return node.sensors[name]

    lwm2m = Command("lwm2m", "LwM2M connector").add(
        Command(
            "server_add",
            "Add the LwM2M server and register: server_add <coap://host:port> <endpoint>",
            server_add,
            3,
        ),
        Command("status", "Show the registration state", status),
    )
    embserve = Command("embserve", "embServe commands").add(
        Command("connector", "Connector commands").add(lwm2m),
        Command("version", "Print the embServe version", version),
    )
    kernel = Command("kernel", "Kernel commands").add(
        Command(
            "reboot",
            "Reboot the node (RAM state is lost, the LwM2M server is kept)",
            reboot,
        ).add(
            Command("cold", "Cold reboot", reboot),
            Command("warm", "Warm reboot", reboot),
        ),
        Command("uptime", "Kernel uptime", uptime),
        Command("version", "Kernel version", kernel_version),
    )
    sensor = Command("sensor", "Simulated sensors").add(
        Command("get", "Read a sensor: get <name>", sensor_get, 2),
        Command("set", "Hold a sensor at a value: set <name> <value>", sensor_set, 3),
        Command(
            "source",
            "Feed a sensor: source <name> <value|wave:...|csv:PATH>",
            sensor_source,
            3,
        ),
        Command("list", "List the sensors and their sources", sensor_list),
    )
    return [embserve, kernel, sensor]
