"""How the deployer reaches a node's object 9: the paths FITA's kubelet takes.

The deployer speaks to one :class:`DeployChannel`; which one is picked by
``--deploy-via``:

* ``lwm2m``: straight through the gateway's LwM2M server API (in process);
* ``mqtt``: MQTT v5 SDF requests to the gateway, as the kubelet's
  NextGenGW mode does (:mod:`hil.faredge.channel_mqtt`);
* ``rest``: the Leshan-style REST API, as the kubelet's leshan mode does
  (:mod:`hil.faredge.channel_rest`).

Every method raises :class:`DeployStepError` naming the node, the step and
the device's answer when a step fails; ``uncertain`` says whether the step
may still have happened (no answer came back, or the request could not be
delivered) as opposed to being refused.
"""

from __future__ import annotations

import abc
from typing import Any

from ..fita.labels import node_labels
from ..gateway.errors import GatewayError, GatewayRequestError, UnknownEndpoint
from ..lwm2m import Path
from ..lwm2m.link import available_instances

SOFTWARE_MANAGEMENT = 9


class DeployStepError(RuntimeError):
    """One deployment step failed; says which node, which step and what came back."""

    def __init__(self, endpoint: str, step: str, detail: str, *, uncertain: bool = False, code: int | None = None):
        self.endpoint = endpoint
        self.step = step
        self.detail = detail
        self.uncertain = uncertain  # no answer: the device may or may not have done it
        self.code = code  # the device's CoAP code as a number (132 = 4.04), when it answered
        super().__init__(f"{endpoint}: {step} failed: {detail}")

    @property
    def not_found(self) -> bool:
        return self.code == 132


class DeployChannel(abc.ABC):
    """The five operations a deployment needs, plus reading instance state."""

    name: str

    async def __aenter__(self) -> "DeployChannel":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release connections; the default has none."""

    @abc.abstractmethod
    async def instances(self, endpoint: str) -> list[int]:
        """Ids of the node's /9 instances."""

    @abc.abstractmethod
    async def create(self, endpoint: str, instance: int) -> None: ...

    @abc.abstractmethod
    async def write_package(self, endpoint: str, instance: int, service_json: bytes) -> None: ...

    @abc.abstractmethod
    async def install(self, endpoint: str, instance: int) -> None: ...

    @abc.abstractmethod
    async def activate(self, endpoint: str, instance: int) -> None: ...

    @abc.abstractmethod
    async def delete(self, endpoint: str, instance: int) -> None: ...

    @abc.abstractmethod
    async def read_instance(self, endpoint: str, instance: int) -> dict[int, Any]:
        """Resource id -> value of /9/{instance} (7 Update State, 9 Update Result, 12 Activation State...)."""

    async def labels(self, endpoint: str) -> dict[str, str]:
        """The node labels FITA's node watcher would derive (see :mod:`hil.fita.labels`)."""
        raise NotImplementedError(f"the {self.name} deploy channel cannot read node labels")

    async def memory_total_kb(self, endpoint: str) -> int | None:
        """The node's Memory Total (/3/0/21) in kB, None when it reports none."""
        raise NotImplementedError(f"the {self.name} deploy channel cannot read the node's memory")

    async def package_error(self, endpoint: str, instance: int) -> str:
        """The device's own reason for a failed install or activation: 27404 of the 35003 instance linked to /9/{instance}."""
        raise NotImplementedError(f"the {self.name} deploy channel cannot read the device's error")


class LwM2MChannel(DeployChannel):
    """Directly through the in-process gateway's LwM2M server."""

    name = "lwm2m"

    def __init__(self, gateway: Any, step_timeout: float | None = None):
        self.gateway = gateway
        self.step_timeout = step_timeout  # None: the gateway's per-exchange timeout (all retransmissions)

    async def _call(self, endpoint: str, step: str, coro: Any) -> Any:
        try:
            return await coro
        except GatewayRequestError as e:
            raise DeployStepError(endpoint, step, str(e), code=e.code_number) from e
        except UnknownEndpoint as e:  # not sent at all
            raise DeployStepError(endpoint, step, str(e)) from e
        except GatewayError as e:
            raise DeployStepError(endpoint, step, str(e), uncertain=True) from e

    async def instances(self, endpoint: str) -> list[int]:
        # Discover asks the device itself: the registration's object links lag
        # behind until the node's next registration update arrives.
        links = await self._call(endpoint, "list instances",
                                 self.gateway.discover(endpoint, "/9", timeout=self.step_timeout))
        return available_instances(links).get(SOFTWARE_MANAGEMENT, [])

    async def create(self, endpoint: str, instance: int) -> None:
        await self._call(endpoint, f"create /9/{instance}",
                         self.gateway.create(endpoint, "/9", instance_id=instance, timeout=self.step_timeout))

    async def write_package(self, endpoint: str, instance: int, service_json: bytes) -> None:
        await self._call(endpoint, f"write package /9/{instance}/2",
                         self.gateway.write(endpoint, f"/9/{instance}/2", service_json, timeout=self.step_timeout))

    async def install(self, endpoint: str, instance: int) -> None:
        await self._call(endpoint, f"install /9/{instance}/4",
                         self.gateway.execute(endpoint, f"/9/{instance}/4", timeout=self.step_timeout))

    async def activate(self, endpoint: str, instance: int) -> None:
        await self._call(endpoint, f"activate /9/{instance}/10",
                         self.gateway.execute(endpoint, f"/9/{instance}/10", timeout=self.step_timeout))

    async def delete(self, endpoint: str, instance: int) -> None:
        await self._call(endpoint, f"delete /9/{instance}",
                         self.gateway.delete(endpoint, f"/9/{instance}", timeout=self.step_timeout))

    async def labels(self, endpoint: str) -> dict[str, str]:
        return await self._call(endpoint, "read capabilities", node_labels(self.gateway, endpoint))

    async def read_instance(self, endpoint: str, instance: int) -> dict[int, Any]:
        content = await self._call(endpoint, f"read /9/{instance}",
                                   self.gateway.read(endpoint, f"/9/{instance}", timeout=self.step_timeout))
        return {p.res: v for p, v in content.items() if isinstance(p, Path) and p.res is not None and p.ri is None}

    async def memory_total_kb(self, endpoint: str) -> int | None:
        content = await self._call(endpoint, "read Memory Total /3/0/21",
                                   self.gateway.read(endpoint, "/3/0/21", timeout=self.step_timeout))
        return memory_kb(content.get(Path(3, 0, 21)))

    async def package_error(self, endpoint: str, instance: int) -> str:
        content = await self._call(endpoint, "read /35003", self.gateway.read(endpoint, "/35003", timeout=self.step_timeout))
        return monitor_error(content, instance)


def memory_kb(value: Any) -> int | None:
    """Memory Total as an int of kB, from an Integer or the string some devices send."""
    try:
        return int(str(value).strip()) if value is not None and str(value).strip() else None
    except ValueError:
        return None


def monitor_error(content: dict[Any, Any], instance: int) -> str:
    """27404 of the 35003 instance whose 27400 links to /9/{instance}, from a read of /35003."""
    for path, value in content.items():
        if isinstance(path, Path) and path.res == 27400 and (getattr(value, "obj", None), getattr(value, "inst", None)) == (9, instance):
            return str(content.get(Path(35003, path.inst, 27404)) or "")
    return ""
