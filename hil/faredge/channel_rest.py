"""Deploy through the gateway's Leshan-style REST API, as the kubelet's leshan mode does.

==============  ==========================================================================
instances       ``GET /api/clients/{ep}`` → ``availableInstances["9"]``
create          ``POST /api/clients/{ep}/9?timeout=5&format=TLV``
                ``{"id": N, "kind": "instance", "resources": []}``
write package   ``PUT /api/clients/{ep}/9/{id}/2?timeout=300&format=TLV``
                ``{"id": 2, "kind": "singleResource", "value": "<hex>", "type": "opaque"}``
install         ``POST /api/clients/{ep}/9/{id}/4?timeout=5&format=TLV``
activate        ``POST /api/clients/{ep}/9/{id}/10?timeout=5&format=TLV``
delete          ``DELETE /api/clients/{ep}/9/{id}?timeout=5``
read            ``GET /api/clients/{ep}/9/{id}?format=TLV``
==============  ==========================================================================

A step succeeds when the answer's ``success`` is true; otherwise
:class:`DeployStepError` carries the HTTP status, the Leshan status name and
the error message. Instance ids in this mode start at 1000.
"""

from __future__ import annotations

from typing import Any, Self

import aiohttp

from ..lwm2m.model import ObjLnk
from .channels import DeployChannel, DeployStepError, memory_kb
from ..fita.labels import labels_from


# Leshan status names -> CoAP codes as numbers (the ones a deployment meets)
LESHAN_CODES = {"NOT_FOUND": 132, "BAD_REQUEST": 128, "METHOD_NOT_ALLOWED": 133, "NOT_ACCEPTABLE": 134,
                "UNSUPPORTED_CONTENT_FORMAT": 143, "INTERNAL_SERVER_ERROR": 160}


class RestChannel(DeployChannel):
    """The kubelet's leshan path: HTTP to the gateway's REST API."""

    name = "rest"
    first_instance = 1000

    def __init__(self, base_url: str, step_timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.base_url = self.base_url.removesuffix("/api")
        self.step_timeout = step_timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._http()
        return self

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # one connection per request in flight: a hundred concurrent deploys must not queue
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def client_url(self, endpoint: str, path: str = "") -> str:
        return f"{self.base_url}/api/clients/{endpoint}{path}"

    async def call(self, endpoint: str, method: str, path: str, *, step: str, json: Any = None, params: dict[str, str] | None = None) -> dict[str, Any]:
        """One API call; the answer, or :class:`DeployStepError` unless it says ``success``."""
        url = self.client_url(endpoint, path)
        try:
            async with self._http().request(
                method, url, json=json, params=params, timeout=aiohttp.ClientTimeout(total=self.step_timeout)
            ) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
                status = response.status
        except TimeoutError:
            raise DeployStepError(endpoint, step, f"{method} {url}: no answer within {self.step_timeout:g} s", uncertain=True) from None
        except aiohttp.ClientError as exc:
            raise DeployStepError(endpoint, step, f"{method} {url}: {exc}", uncertain=True) from None
        if not isinstance(answer, dict):
            raise DeployStepError(endpoint, step, f"{method} {url}: HTTP {status} without a JSON object")
        if status != 200 or answer.get("success") is False:
            detail = f"{method} {url}: HTTP {status}, status {answer.get('status')}"
            if answer.get("errormessage"):
                detail += f": {answer['errormessage']}"
            # 504/502: the gateway got no answer from the device, or could not reach it
            raise DeployStepError(endpoint, step, detail, uncertain=status in (502, 504),
                                  code=LESHAN_CODES.get(str(answer.get("status"))))
        return answer

    # ------------------------------------------------------------------ DeployChannel

    async def registration(self, endpoint: str) -> dict[str, Any]:
        return await self.call(endpoint, "GET", "", step="read registration")

    async def instances(self, endpoint: str) -> list[int]:
        reg = await self.registration(endpoint)
        return sorted((reg.get("availableInstances") or {}).get("9", []))

    async def create(self, endpoint: str, instance: int) -> None:
        await self.call(endpoint, "POST", "/9", step=f"create /9/{instance}", params={"timeout": "5", "format": "TLV"},
                        json={"id": instance, "kind": "instance", "resources": []})

    async def write_package(self, endpoint: str, instance: int, service_json: bytes) -> None:
        await self.call(endpoint, "PUT", f"/9/{instance}/2", step=f"write package /9/{instance}/2",
                        params={"timeout": "300", "format": "TLV"},
                        json={"id": 2, "kind": "singleResource", "value": service_json.hex(), "type": "opaque"})

    async def install(self, endpoint: str, instance: int) -> None:
        await self.call(endpoint, "POST", f"/9/{instance}/4", step=f"install /9/{instance}/4", params={"timeout": "5", "format": "TLV"})

    async def activate(self, endpoint: str, instance: int) -> None:
        await self.call(endpoint, "POST", f"/9/{instance}/10", step=f"activate /9/{instance}/10", params={"timeout": "5", "format": "TLV"})

    async def delete(self, endpoint: str, instance: int) -> None:
        await self.call(endpoint, "DELETE", f"/9/{instance}", step=f"delete /9/{instance}", params={"timeout": "5"})

    async def read(self, endpoint: str, path: str) -> Any:
        """The ``content`` of a read, e.g. ``read(ep, "/3/0/17")``."""
        answer = await self.call(endpoint, "GET", path, step=f"read {path}", params={"format": "TLV"})
        return answer.get("content")

    async def read_instance(self, endpoint: str, instance: int) -> dict[int, Any]:
        node = await self.read(endpoint, f"/9/{instance}")
        out: dict[int, Any] = {}
        for res in (node or {}).get("resources", []):
            if res.get("kind") == "singleResource":
                out[res["id"]] = _value(res.get("value"))
            elif res.get("kind") == "multiResource":
                out[res["id"]] = {int(k): _value(v) for k, v in (res.get("values") or {}).items()}
        return out

    async def labels(self, endpoint: str) -> dict[str, str]:
        """As the node watcher's leshan mode: /3/0/17, then each /15 instance's Group and Property."""
        reg = await self.registration(endpoint)
        device_type = (await self.read(endpoint, "/3/0/17") or {}).get("value")
        props: list[str] = []
        for inst in (reg.get("availableInstances") or {}).get("15", []):
            group = (await self.read(endpoint, f"/15/{inst}/1") or {}).get("value")
            if str(group) != "0":
                continue
            prop = (await self.read(endpoint, f"/15/{inst}/0") or {}).get("value")
            if prop is not None:
                props.append(str(prop))
        return labels_from(device_type if isinstance(device_type, str) else None, props)


    async def memory_total_kb(self, endpoint: str) -> int | None:
        return memory_kb((await self.read(endpoint, "/3/0/21") or {}).get("value"))

    async def package_error(self, endpoint: str, instance: int) -> str:
        node = await self.read(endpoint, "/35003") or {}
        for inst in node.get("instances") or []:
            values = {r.get("id"): r.get("value") for r in inst.get("resources") or [] if r.get("kind") == "singleResource"}
            link = values.get(27400)
            if isinstance(link, dict) and (link.get("objectId"), link.get("objectInstanceId")) == (9, instance):
                return str(values.get(27404) or "")
        return ""


def _value(value: Any) -> Any:
    if isinstance(value, dict) and "objectId" in value:
        return ObjLnk(int(value["objectId"]), int(value["objectInstanceId"]))
    return value
