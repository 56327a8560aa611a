"""Helpers for the northbound API tests: an MQTT v5 watcher/requester and node start-up.

:class:`MqttProbe` is a plain MQTT client (paho, as the kubelet and the node
watcher are) that records what arrives on the topics it watches and sends SDF
requests the way the kubelet does: QoS 1, random hex ResponseTopic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Self

from conftest import WAIT

from hil.device.node import Node
from hil.fita.mqtt import MqttClient, publish_properties


@dataclass
class Received:
    topic: str
    payload: bytes
    correlation: bytes | None
    content_type: str | None

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    def __init__(self, host: str, port: int):
        self.client = MqttClient(host, port, client_id=f"probe-{secrets.token_hex(4)}", on_message=self._on_message)
        self.seen: list[Received] = []
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    def _on_message(self, message: Any) -> None:
        props = message.properties
        self.seen.append(
            Received(
                message.topic,
                bytes(message.payload),
                getattr(props, "CorrelationData", None),
                getattr(props, "ContentType", None),
            )
        )
        self._changed.set()

    async def watch(self, *topics: str) -> None:
        for topic in topics:
            await self.client.subscribe(topic, qos=1)

    async def expect(self, what: str, match: Callable[[Received], bool], timeout: float = WAIT, start: int = 0) -> Received:
        """The first message (from index ``start``) that ``match``es; fails listing what arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = start
        while True:
            while index < len(self.seen):
                if match(self.seen[index]):
                    return self.seen[index]
                index += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                arrived = "\n  ".join(f"{r.topic}: {r.payload[:160]!r}" for r in self.seen[-15:]) or "nothing"
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; last messages:\n  {arrived}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def announce_of(self, endpoint: str, start: int = 0) -> dict[str, Any]:
        msg = await self.expect(f"announce of {endpoint}", lambda r: r.topic == "announce" and endpoint in r.json(), start=start)
        return msg.json()

    async def unregister_of(self, endpoint: str, start: int = 0) -> Received:
        return await self.expect(f"unregister of {endpoint}", lambda r: r.topic == "unregister" and r.payload == endpoint.encode(), start=start)

    async def request(
        self,
        topic: str,
        body: Any,
        *,
        correlation: bytes | None = None,
        raw: bytes | None = None,
        timeout: float = WAIT,
    ) -> Received:
        """Publish a request with a fresh hex ResponseTopic and return the answer message."""
        response_topic = secrets.token_hex(16)
        await self.client.subscribe(response_topic, qos=1)
        start = len(self.seen)
        payload = raw if raw is not None else json.dumps(body)
        self.client.publish(topic, payload, qos=1, properties=publish_properties(response_topic=response_topic, correlation_data=correlation))
        try:
            return await self.expect(f"answer to {topic} {payload[:80]!r}", lambda r: r.topic == response_topic, timeout, start)
        finally:
            self.client.unsubscribe_nowait(response_topic)

    async def call(self, topic: str, operation: str, data: Any = None, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"operation": operation}
        if data is not None:
            body["data"] = data
        return (await self.request(topic, body, **kwargs)).json()


@contextlib.asynccontextmanager
async def running_node(gateway: Any, endpoint: str, *, boot_hook: Any = None, **kwargs: Any) -> AsyncIterator[Node]:
    """A simulated node bootstrapped through its shell and registered at ``gateway``."""
    node = Node(endpoint, **kwargs)
    if boot_hook is not None:
        node.add_boot_hook(boot_hook)
    async with node:
        out = await node.shell.run_line(f"embserve connector lwm2m server_add {gateway.uri} {endpoint}")
        assert node.shell.last_status == 0, out
        await gateway.wait_for_registration(endpoint, WAIT)
        yield node


@contextlib.asynccontextmanager
async def many_nodes(gateway: Any, endpoints: list[str], **kwargs: Any) -> AsyncIterator[list[Node]]:
    """Many nodes started and registered at once; all stopped on exit."""
    nodes = [Node(ep, **kwargs) for ep in endpoints]
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        for n in nodes:
            await n.connect(gateway.uri)
        await asyncio.gather(*(gateway.wait_for_registration(ep, WAIT) for ep in endpoints))
        yield nodes
    finally:
        await asyncio.gather(*(n.aclose() for n in nodes), return_exceptions=True)


def has_runtime(node: Node) -> bool:
    """True once the node's object 9 is wired to the service runtime (teammates' work in progress)."""
    return node.objects.handler(9) is not None
