"""NextGenGW's northbound side: the gateway's devices as SDF objects over MQTT v5.

``async with SdfMqttBridge(gateway, broker_host, broker_port) as bridge`` connects
to the broker and from then on:

Announce and unregister (topics ``announce`` and ``unregister``, QoS 1)
    On every registration the bridge reads Device (``/3/0``) and DevCapMgmt
    (``/15``) and publishes ``{"<ep>": {"sdfObject": {...}}}`` with every object
    the node registered (but Security, Server and Access Control): ``Device: [{"label": "0", "sdfProperty": {"Memory_Total": "256", ...}}]``,
    ``DevCapMgmt: [{"label": "0", "sdfProperty": {"Group": "0", "Property": "2"}}]``,
    ``LWM2M_Software_Management: [{"label": "0"}, ...]`` (always present, possibly
    empty: the node watcher iterates it), and the other objects with their
    instance labels. An Update that changes the object links re-announces (the
    watcher ignores a node it already knows; the kubelet channel reads the
    fresh instance list from it). De-registration and lifetime expiry publish
    the bare endpoint name to ``unregister``; so does closing the bridge, for
    every node it announced, since nothing reaches them through it any more.

Reachability (topic ``reachability``, QoS 1) — this project's
    When the gateway loses a node (an ICMP error, or a request that used up
    its retransmissions) or hears from it again, the bridge publishes
    ``{"<ep>": {"reachable": false, "reason": "...", "timestamp": <epoch s>}}``.

Requests (subscribed as ``+/+/#``, MQTT v5)
    Topic ``{ep}/{Object}[/{inst}[/Property/{name}|/Action/{name}]]``, payload
    ``{"operation": "GET"|"POST"|"DELETE", "data": ...}``; ``data`` may be a JSON
    value or a string holding JSON. The answer goes to the request's
    ResponseTopic with its CorrelationData copied, payload
    ``{"response_code": <CoAP code as a number>, ...}``:

    =========================  ==========  ===========================  ====
    topic                      operation   LwM2M                        code
    =========================  ==========  ===========================  ====
    ``{ep}/{Obj}``             GET         Read /obj                    69
    ``{ep}/{Obj}``             POST        Create (``data.label`` =     65
                                           instance id; other keys of
                                           ``data`` or ``data.sdfProperty``
                                           are initial values)
    ``{ep}/{Obj}/{i}``         GET         Read /obj/i                  69
    ``{ep}/{Obj}/{i}``         POST        Write (partial update)       68
    ``{ep}/{Obj}/{i}``         DELETE      Delete /obj/i                66
    ``.../{i}/Property/{p}``   GET         Read /obj/i/res              69
    ``.../{i}/Property/{p}``   POST        Write /obj/i/res (``data``;  68
                                           an object is written as its
                                           JSON text, e.g. the Package)
    ``.../{i}/Action/{a}``     POST        Execute /obj/i/res           68
    =========================  ==========  ===========================  ====

    A GET answer carries ``"sdfObject": {"<Obj>": [{"label", "sdfProperty"}]}``
    (values as strings, see :mod:`hil.fita.sdf`); a create answer carries
    the ``label`` created. Failures answer the device's own code (e.g. 132 =
    4.04) or the gateway's: 128 (4.00) bad JSON, bad operation or value; 132
    (4.04) unknown node, object, property or action; 133 (4.05) operation not
    allowed there; 164 (5.04) the device did not answer in time; 162 (5.02) the
    device could not be reached or sent an undecodable answer. Failures add
    ``"error": "<what went wrong>"``. A request without ResponseTopic is still
    carried out (the node watcher deletes leftover packages that way) and its
    outcome is logged.

Readings (``{ep}/{Obj}/{inst}/Property/{Resource}``, QoS 1) — topic scheme of this project
    The bridge observes ``/3303/{x}/5700`` and ``/3300/{x}/5700`` on every node
    that has those instances (learnt from the registration and its updates)
    and publishes each notification as
    ``{"value": 21.5, "<Obj>": 21.5, "timestamp": <epoch seconds>}``, e.g. on
    ``node1/Temperature/0/Property/Sensor_Value`` with ``"Temperature": 21.5``
    (``Temperature`` being the SDF name FITA's adapters use for that reading).
    It is the topic a GET of that property would use; the bridge's own
    subscription is no-local, and a reading carries no ``operation``. A
    device that pushes readings with LwM2M 1.1 Send (``/dp``) is published
    the same way, one message per reading path the Send carries.

When the broker goes away
    The bridge reconnects with exponential back-off (``reconnect_initial`` s
    doubling up to ``reconnect_cap`` s, with jitter), in a session the broker
    keeps for ``session_expiry`` s, and subscribes again when the broker no
    longer has it (a restarted broker). Whatever it publishes meanwhile
    (readings, announces, answers) waits in a queue of ``outbox_limit``
    messages and goes out, in order, once connected; past that limit the
    oldest are dropped, counted in ``stats.lost`` and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Self

import paho.mqtt.client as mqtt

from ..fita import sdf
from ..fita.mqtt import MqttAuth, MqttClient, MqttError, publish_properties
from ..fita.northbound import (
    ANNOUNCE_TOPIC,
    BAD_GATEWAY,
    BAD_REQUEST,
    CHANGED,
    CONTENT,
    CREATED,
    DELETED,
    GATEWAY_TIMEOUT,
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PROPERTY,
    REACHABILITY_TOPIC,
    REQUEST_FILTER,
    SUCCESS_CODES,
    UNREGISTER_TOPIC,
    RequestError,
    Target,
    parse_request,
    parse_topic,
    request_topic,
)
from ..fita.sdf import SdfError
from ..lwm2m.model import DEFINITIONS, Content, LwM2MError, Path
from .errors import (
    GatewayDecodeError,
    GatewayError,
    GatewayRequestError,
    GatewayTimeout,
    GatewayTransportError,
    UnknownEndpoint,
)
from .observe import Notification, Observation
from .registry import GONE, Registration, RegistrationEvent

ANNOUNCE_READS = (3, 15)  # objects read in full for the announce; the rest go by label
PLUMBING_OBJECTS = (0, 1, 2)  # Security, Server, Access Control: LwM2M's own, not the device's
READING_PATHS = ((3303, 5700), (3300, 5700))  # observed and published as readings
CLOSE_GRACE = 1.0  # seconds closing waits for device requests in flight


@dataclass
class BridgeStats:
    announces: int = 0
    unregisters: int = 0
    requests: int = 0
    failed_requests: int = 0
    readings: int = 0
    readings_by_endpoint: Counter[str] = field(default_factory=Counter)  # the readings, per node
    reconnects: int = 0  # connections made again after a loss
    queued: int = 0  # messages that waited for the broker to come back
    lost: int = 0  # messages dropped because the queue was full


def _error_code(exc: Exception) -> int:
    if isinstance(exc, RequestError):
        return exc.code
    if isinstance(exc, UnknownEndpoint):
        return NOT_FOUND
    if isinstance(exc, GatewayRequestError):
        return exc.code_number or INTERNAL_ERROR
    if isinstance(exc, GatewayTimeout):
        return GATEWAY_TIMEOUT
    if isinstance(exc, (GatewayTransportError, GatewayDecodeError)):
        return BAD_GATEWAY
    if isinstance(exc, SdfError):
        return exc.code
    if isinstance(exc, (LwM2MError, ValueError)):
        return BAD_REQUEST
    return INTERNAL_ERROR


class SdfMqttBridge:
    """The gateway's SDF/MQTT face; see the module docs for topics and payloads."""

    def __init__(
        self,
        gateway: Any,
        broker_host: str,
        broker_port: int,
        *,
        client_id: str | None = None,
        request_timeout: float | None = None,
        announce_reads: tuple[int, ...] = ANNOUNCE_READS,
        announce_concurrency: int = 32,
        readings: bool = True,
        reconnect_initial: float = 0.1,
        reconnect_cap: float = 1.0,
        session_expiry: int = 300,
        outbox_limit: int = 10_000,
        log: logging.Logger | None = None,
        auth: MqttAuth | None = None,
    ):
        self.gateway = gateway
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.request_timeout = request_timeout
        self.announce_reads = announce_reads
        self.readings_enabled = readings
        self.log = log or logging.getLogger("hil.gateway.sdf")
        self.stats = BridgeStats()
        self.reconnect_initial = reconnect_initial
        self.reconnect_cap = reconnect_cap
        self.mqtt = MqttClient(
            broker_host, broker_port, client_id=client_id or f"nextgengw-bridge-{secrets.token_hex(4)}",
            on_message=self._on_message, session_expiry=session_expiry,
            on_connection_lost=self._connection_lost, log=self.log, auth=auth,
        )
        self._outbox: deque[tuple[str, str, int, Any]] = deque()
        self.outbox_limit = outbox_limit
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._remove_listener: Any = None
        self._remove_report_listener: Any = None
        self._announcing: dict[str, asyncio.Task[None]] = {}
        self._announced: set[str] = set()
        self._known_links: dict[str, dict[int, list[int]]] = {}
        self._announce_next: dict[str, Registration] = {}
        # a thousand nodes registering at once must not mean thousands of reads and observes
        # at once: past a few dozen in flight they only queue up in the event loop and time out
        self._announce_gate = asyncio.Semaphore(announce_concurrency)
        self._observations: dict[tuple[str, Path], Observation] = {}
        self._observing: dict[tuple[str, Path], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def broker_address(self) -> str:
        return f"{self.broker_host}:{self.broker_port}"

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> Self:
        await self.mqtt.connect()
        try:
            await self.mqtt.subscribe(REQUEST_FILTER, qos=1, no_local=True)
        except MqttError:
            await self.mqtt.close()
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._stay_connected(), name="sdf-bridge-reconnect")
        self._remove_listener = self.gateway.add_listener(self._on_registration)
        add_report_listener = getattr(self.gateway, "add_report_listener", None)
        if add_report_listener is not None and self.readings_enabled:
            self._remove_report_listener = add_report_listener(self._on_report)
        for reg in list(self.gateway.registrations.values()):
            self._registered(reg)
        self.log.info("SDF/MQTT bridge on %s serving %s", self.broker_address, REQUEST_FILTER)
        return self

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._remove_report_listener is not None:
            self._remove_report_listener()
            self._remove_report_listener = None
        pending = [*self._announcing.values(), *self._observing.values(), *self._tasks]
        if pending:
            # let device requests in flight finish: aiocoap mishandles an answer to a cancelled one
            await asyncio.wait(pending, timeout=CLOSE_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for obs in self._observations.values():
            obs.cancel("the SDF/MQTT bridge closed")
        self._observations.clear()
        if self.mqtt.connected and self._announced:
            # QoS 1 beyond paho's in-flight window waits for acks, and DISCONNECT would overtake it
            goodbyes = [self._unregister_acked(ep) for ep in sorted(self._announced)]
            await asyncio.gather(*goodbyes, return_exceptions=True)
        self._announced.clear()
        await self.mqtt.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ the broker connection

    def _connection_lost(self, reason: str) -> None:
        if not self._closing:
            self._lost.set()

    async def _stay_connected(self) -> None:
        """Reconnect after every loss, with back-off; subscribe again if the session is gone; flush the outbox."""
        while True:
            await self._lost.wait()
            self._lost.clear()
            lost_at = time.monotonic()
            delay = self.reconnect_initial
            while True:
                try:
                    await self.mqtt.reconnect(timeout=max(2.0, self.reconnect_cap))
                    if not self.mqtt.session_present:
                        await self.mqtt.subscribe(REQUEST_FILTER, qos=1, no_local=True)
                    break
                except MqttError as exc:
                    self.log.info("SDF/MQTT bridge: broker at %s not back yet (%s); next try in %.2g s",
                                  self.broker_address, exc, delay)
                await asyncio.sleep(delay * random.uniform(1.0, 1.25))
                delay = min(delay * 2, self.reconnect_cap)
            self.stats.reconnects += 1
            self.log.warning("SDF/MQTT bridge: reconnected to %s after %.2f s (%s, %d queued messages to send)",
                             self.broker_address, time.monotonic() - lost_at,
                             "session kept" if self.mqtt.session_present else "subscribed again", len(self._outbox))
            self._flush()

    def _publish(self, topic: str, payload: str, what: str, qos: int = 1, properties: Any = None) -> None:
        """Publish now, or queue it until the broker is back (bounded; drops counted in ``stats.lost``)."""
        if self.mqtt.connected and not self._outbox:
            try:
                self.mqtt.publish(topic, payload, qos=qos, properties=properties)
                return
            except MqttError:
                pass  # the connection went while we were at it: queue
        if len(self._outbox) >= self.outbox_limit:
            dropped = self._outbox.popleft()
            self.stats.lost += 1
            if self.stats.lost == 1 or self.stats.lost % 1000 == 0:
                self.log.warning("SDF/MQTT bridge: broker at %s away, queue full (%d): dropped %s (%d lost so far)",
                                 self.broker_address, self.outbox_limit, dropped[0], self.stats.lost)
        self._outbox.append((topic, payload, qos, properties))
        self.stats.queued += 1
        self.log.debug("queued %s for when %s is back", what, self.broker_address)

    def _flush(self) -> None:
        while self._outbox and self.mqtt.connected:
            topic, payload, qos, properties = self._outbox[0]
            try:
                self.mqtt.publish(topic, payload, qos=qos, properties=properties)
            except MqttError:
                return  # lost again: the supervisor flushes after the next reconnect
            self._outbox.popleft()

    # ------------------------------------------------------------------ registrations

    def _on_registration(self, event: RegistrationEvent) -> None:
        if event.kind == "registered":
            self._registered(event.registration)
        elif event.kind == "updated":
            self._updated(event.registration)
        elif event.kind in GONE:
            self._gone(event.registration, event.kind)
        else:  # unreachable, reachable
            self._publish_reachability(event)

    def _registered(self, reg: Registration) -> None:
        self._schedule_announce(reg)
        self._sync_readings(reg)

    def _updated(self, reg: Registration) -> None:
        known = self._known_links.get(reg.endpoint)
        if known != reg.available_instances:
            self._schedule_announce(reg)
        self._sync_readings(reg)

    def _gone(self, reg: Registration, kind: str) -> None:
        # Announces and observe requests in flight run to their end and then see that the
        # registration is gone; cancelling them would race aiocoap's handling of the answer.
        endpoint = reg.endpoint
        self._announce_next.pop(endpoint, None)
        self._known_links.pop(endpoint, None)
        for key in [k for k in self._observations if k[0] == endpoint]:
            self._observations.pop(key).cancel(f"{endpoint} {kind}")
        self._announced.discard(endpoint)
        self._publish_unregister(endpoint)

    def _schedule_announce(self, reg: Registration) -> None:
        self._known_links[reg.endpoint] = reg.available_instances
        if reg.endpoint in self._announcing:
            self._announce_next[reg.endpoint] = reg  # announced when the one in flight is out
            return
        task = asyncio.get_running_loop().create_task(self._announce(reg), name=f"announce-{reg.endpoint}")
        self._announcing[reg.endpoint] = task
        task.add_done_callback(lambda t, ep=reg.endpoint: self._announce_done(ep, t))

    def _announce_done(self, endpoint: str, task: asyncio.Task[None]) -> None:
        if self._announcing.get(endpoint) is task:
            del self._announcing[endpoint]
        if task.cancelled():
            return
        if task.exception() is not None:
            self.log.error("announce of %s failed: %s", endpoint, task.exception())
        following = self._announce_next.pop(endpoint, None)
        if following is not None and self._remove_listener is not None:
            self._schedule_announce(following)

    def _current(self, reg: Registration) -> bool:
        now = self.gateway.registrations.get(reg.endpoint)
        return now is not None and now.registration_id == reg.registration_id

    async def _announce(self, reg: Registration) -> None:
        try:
            async with self._announce_gate:
                if not self._current(reg):
                    return
                payload = await self.describe(reg)
        except UnknownEndpoint:
            return  # gone while we were reading it; its unregister is out already
        if not self._current(reg) or reg.endpoint in self._announce_next:
            return  # gone, registered anew, or about to be announced with newer links
        self._publish(ANNOUNCE_TOPIC, json.dumps(payload, separators=(",", ":")), f"announce of {reg.endpoint}")
        self._announced.add(reg.endpoint)
        self.stats.announces += 1
        self.log.debug("announced %s", reg.endpoint)

    async def describe(self, reg: Registration) -> dict[str, Any]:
        """The announce payload for one registration (reads the objects in ``announce_reads``)."""
        instances = reg.available_instances
        objects: dict[str, list[dict[str, Any]]] = {}
        reads = [obj for obj in self.announce_reads if instances.get(obj)]
        contents = await asyncio.gather(*(self._read_for_announce(reg.endpoint, obj) for obj in reads))
        content_of = dict(zip(reads, contents))
        for obj, insts in instances.items():
            if obj not in PLUMBING_OBJECTS:
                objects.update(sdf.render(content_of.get(obj, {}), obj, insts))
        objects.setdefault(sdf.object_name(9), [])
        return {reg.endpoint: {"sdfObject": objects}}

    async def _read_for_announce(self, endpoint: str, obj: int) -> Content:
        od = DEFINITIONS.get(obj)
        path = f"/{obj}" if od is None or od.multiple else f"/{obj}/0"
        try:
            return await self._retrying(lambda: self.gateway.read(endpoint, path, timeout=self.request_timeout))
        except UnknownEndpoint:
            raise
        except GatewayError as exc:
            if endpoint not in self.gateway.registrations:
                raise UnknownEndpoint(endpoint, self.gateway.registrations) from None
            self.log.warning("announce of %s lists %s without values: %s", endpoint, sdf.object_name(obj), exc)
            return {}

    @staticmethod
    async def _retrying(request: Any) -> Any:
        """One more try after a timeout: a thousand nodes booting at once can stall the loop for seconds."""
        try:
            return await request()
        except GatewayTimeout:
            return await request()

    def _publish_unregister(self, endpoint: str) -> None:
        self._publish(UNREGISTER_TOPIC, endpoint, f"unregister of {endpoint}")
        self.stats.unregisters += 1

    def _publish_reachability(self, event: RegistrationEvent) -> None:
        reg = event.registration
        body = {reg.endpoint: {"reachable": reg.reachable, "reason": event.reason, "timestamp": time.time()}}
        self._publish(REACHABILITY_TOPIC, json.dumps(body, separators=(",", ":")), f"reachability of {reg.endpoint}")

    async def _unregister_acked(self, endpoint: str) -> None:
        await self.mqtt.publish_acked(UNREGISTER_TOPIC, endpoint, qos=1, timeout=5.0)
        self.stats.unregisters += 1

    # ------------------------------------------------------------------ readings

    def _sync_readings(self, reg: Registration) -> None:
        if not self.readings_enabled:
            return
        instances = reg.available_instances
        wanted = {
            (reg.endpoint, Path(obj, inst, res))
            for obj, res in READING_PATHS
            for inst in instances.get(obj, [])
        }
        for key in [k for k in self._observations if k[0] == reg.endpoint and k not in wanted]:
            self._observations.pop(key).cancel("the instance left the registration")
        for key in wanted:
            active = self._observations.get(key)
            if (active is None or not active.active) and key not in self._observing:
                task = asyncio.get_running_loop().create_task(self._observe(*key), name=f"observe-{key[0]}{key[1]}")
                self._observing[key] = task
                task.add_done_callback(lambda t, k=key: self._observe_done(k, t))

    def _observe_done(self, key: tuple[str, Path], task: asyncio.Task[None]) -> None:
        if self._observing.get(key) is task:
            del self._observing[key]

    async def _observe(self, endpoint: str, path: Path) -> None:
        reg = self.gateway.registrations.get(endpoint)
        try:
            async with self._announce_gate:
                if reg is None or not self._current(reg):
                    return
                obs = await self._retrying(lambda: self.gateway.observe(endpoint, path, timeout=self.request_timeout).start())
        except UnknownEndpoint:
            return
        except GatewayError as exc:
            if endpoint not in self.gateway.registrations:
                return  # gone meanwhile: nothing to read from
            self.log.warning("no readings from %s%s: observe failed: %s", endpoint, path, exc)
            return
        if reg is None or not self._current(reg) or self._remove_listener is None:
            obs.cancel("the registration went away while the observation started")
            return
        self._observations[(endpoint, path)] = obs
        obs.add_listener(self._publish_reading)

    def _publish_reading(self, note: Notification) -> None:
        try:
            value = note.value()
        except KeyError:
            return
        assert note.path is not None
        self._publish_value(note.endpoint, note.path, value, note.timestamp)

    def _on_report(self, note: Notification) -> None:
        if note.kind != "send":
            return  # notifications come through the bridge's own observations
        for path, value in note.content.items():
            if path.ri is None and (path.obj, path.res) in READING_PATHS:
                self._publish_value(note.endpoint, path, value, note.timestamp)

    def _publish_value(self, endpoint: str, path: Path, value: Any, timestamp: float) -> None:
        assert path.res is not None
        obj_name = sdf.object_name(path.obj)
        reading_topic = request_topic(endpoint, obj_name, path.inst, PROPERTY, sdf.resource_name(path.obj, path.res))
        body = {"value": value, obj_name: value, "timestamp": timestamp}
        self._publish(reading_topic, json.dumps(body), f"reading of {endpoint}{path}")
        self.stats.readings += 1
        self.stats.readings_by_endpoint[endpoint] += 1

    # ------------------------------------------------------------------ requests

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        task = asyncio.get_running_loop().create_task(self._serve(message.topic, bytes(message.payload), response_topic, correlation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None) -> None:
        self.stats.requests += 1
        try:
            answer = await self.handle(topic, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an answer, never a dead bridge
            code = _error_code(exc)
            if code == INTERNAL_ERROR:
                self.log.exception("request on %s failed unexpectedly", topic)
            answer = {"response_code": code, "error": str(exc)}
        if answer["response_code"] not in SUCCESS_CODES:
            self.stats.failed_requests += 1
        if not response_topic:
            level = logging.INFO if answer["response_code"] in SUCCESS_CODES else logging.WARNING
            self.log.log(level, "request on %s has no ResponseTopic; outcome not sent: %s", topic, answer)
            return
        self._publish(
            response_topic,
            json.dumps(answer, separators=(",", ":")),
            f"answer to {topic}",
            properties=publish_properties(correlation_data=correlation, content_type="application/json"),
        )

    async def handle(self, topic: str, payload: bytes) -> dict[str, Any]:
        """Carry out one request and return the answer payload (raises for failures)."""
        operation, data = parse_request(payload)
        target = parse_topic(topic)
        if target.endpoint not in self.gateway.registrations:
            raise RequestError(NOT_FOUND, f"node {target.endpoint!r} is not registered at this gateway")
        if target.inst is None:
            return await self._on_object(target, operation, data)
        if target.kind is None:
            return await self._on_instance(target, operation, data)
        if target.kind == "Action":
            return await self._on_action(target, operation, data)
        return await self._on_property(target, operation, data)

    async def _on_object(self, t: Target, operation: str, data: Any) -> dict[str, Any]:
        if operation == "GET":
            return await self._read(t)
        if operation == "POST":
            fields = dict(data) if isinstance(data, dict) else {}
            if data is not None and not isinstance(data, dict):
                raise RequestError(BAD_REQUEST, f"create on {sdf.object_name(t.obj)}: data must be an object such as {{\"label\": \"0\"}}")
            label = fields.pop("label", None)
            inst = sdf.instance_id(label, f"create on {sdf.object_name(t.obj)}") if label is not None else None
            values = fields.pop("sdfProperty", None) or fields
            if values and inst is None:
                raise RequestError(BAD_REQUEST, f"create on {sdf.object_name(t.obj)} with initial values needs a label (the instance id)")
            content = self._content(t.obj, inst, values) if values and inst is not None else None
            created = await self.gateway.create(t.endpoint, f"/{t.obj}", content, instance_id=inst, timeout=self.request_timeout)
            return {"response_code": CREATED, "label": str(created.inst)}
        raise RequestError(METHOD_NOT_ALLOWED, f"{operation} is not allowed on a whole object ({sdf.object_name(t.obj)}); use GET or POST")

    async def _on_instance(self, t: Target, operation: str, data: Any) -> dict[str, Any]:
        if operation == "GET":
            return await self._read(t)
        if operation == "DELETE":
            await self.gateway.delete(t.endpoint, t.path, timeout=self.request_timeout)
            return {"response_code": DELETED}
        values = data.get("sdfProperty", data) if isinstance(data, dict) else None
        if not values:
            raise RequestError(BAD_REQUEST, f"POST to {sdf.object_name(t.obj)}/{t.inst} needs data {{\"<Property>\": value, ...}}")
        content = self._content(t.obj, t.inst, values)
        await self.gateway.write(t.endpoint, t.path, content, replace=False, timeout=self.request_timeout)
        return {"response_code": CHANGED}

    async def _on_property(self, t: Target, operation: str, data: Any) -> dict[str, Any]:
        self._require_resource(t, executable=False)
        if operation == "GET":
            return await self._read(t)
        if operation == "POST":
            if data is None:
                raise RequestError(BAD_REQUEST, f"POST to property {sdf.resource_name(t.obj, t.res)} needs data (the value)")
            value = sdf.parse_value(t.path, data)
            await self.gateway.write(t.endpoint, t.path, value, timeout=self.request_timeout)
            return {"response_code": CHANGED}
        raise RequestError(METHOD_NOT_ALLOWED, f"DELETE is not allowed on a property ({sdf.resource_name(t.obj, t.res)})")

    async def _on_action(self, t: Target, operation: str, data: Any) -> dict[str, Any]:
        self._require_resource(t, executable=True)
        if operation != "POST":
            raise RequestError(METHOD_NOT_ALLOWED, f"{operation} is not allowed on an action ({sdf.resource_name(t.obj, t.res)}); use POST")
        arg = None if data is None else (data if isinstance(data, str) else json.dumps(data))
        await self.gateway.execute(t.endpoint, t.path, arg, timeout=self.request_timeout)
        return {"response_code": CHANGED}

    @staticmethod
    def _require_resource(t: Target, *, executable: bool) -> None:
        od = DEFINITIONS.get(t.obj)
        rd = od.resource(t.res) if od and t.res is not None else None
        if rd is None or rd.executable == executable:
            return
        name = sdf.resource_name(t.obj, t.res)
        if executable:
            raise RequestError(METHOD_NOT_ALLOWED, f"{name} is a property, not an action: use .../Property/{name}")
        raise RequestError(METHOD_NOT_ALLOWED, f"{name} is an action, not a property: use .../Action/{name}")

    async def _read(self, t: Target) -> dict[str, Any]:
        content = await self.gateway.read(t.endpoint, t.path, timeout=self.request_timeout)
        return {"response_code": CONTENT, "sdfObject": sdf.render(content, t.obj)}

    @staticmethod
    def _content(obj: int, inst: int, values: Any) -> Content:
        if not isinstance(values, dict):
            raise RequestError(BAD_REQUEST, f"values for {sdf.object_name(obj)}/{inst} must be an object {{\"<Property>\": value}}")
        content: Content = {}
        for name, value in values.items():
            path = Path(obj, inst, sdf.resource_id(obj, str(name)))
            content[path] = sdf.parse_value(path, value)
        return content
