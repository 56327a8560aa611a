"""An MQTT v5 client (paho-mqtt 2) driven by the asyncio event loop.

paho runs here without its network thread: its socket is registered with
the running loop (``add_reader``/``add_writer``) and every callback, message
handlers included, runs on the loop thread. TCP_NODELAY is set on the socket,
because request/response over MQTT is a chain of small packets.

    async with MqttClient(host, port, on_message=handle) as client:
        await client.subscribe("a/+/b", no_local=True)
        client.publish("topic", b"payload", qos=1)

A connection that is lost stays lost until :meth:`MqttClient.reconnect`
(``on_connection_lost`` says when); with ``session_expiry`` the broker keeps
the session (subscriptions, QoS 1 messages for us) that long after a loss,
and ``on_connected(session_present)`` tells whether it did.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Callable
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

MessageHandler = Callable[[mqtt.MQTTMessage], None]

_ids = itertools.count(1)


class MqttError(ConnectionError):
    """The broker refused or dropped us, or did not answer in time."""


def publish_properties(response_topic: str | None = None, correlation_data: bytes | None = None, content_type: str | None = None) -> Properties | None:
    if response_topic is None and correlation_data is None and content_type is None:
        return None
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation_data is not None:
        props.CorrelationData = correlation_data
    if content_type is not None:
        props.ContentType = content_type
    return props


class MqttClient:
    """One MQTT v5 connection; see the module docs."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        on_message: MessageHandler | None = None,
        keepalive: int = 30,
        session_expiry: int | None = None,
        on_connected: Callable[[bool], None] | None = None,
        on_connection_lost: Callable[[str], None] | None = None,
        log: logging.Logger | None = None,
    ):
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.on_connected = on_connected
        self.on_connection_lost = on_connection_lost
        self.session_present = False
        self.log = log or logging.getLogger("hil.mqtt")
        self.client_id = client_id or f"embserve-hil-{os.getpid()}-{next(_ids)}"
        self.on_message = on_message
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_register_write
        self._client.on_socket_unregister_write = self._on_unregister_write
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._misc: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Future[None] | None = None
        self._acks: dict[int, asyncio.Future[list]] = {}
        self._published: dict[int, asyncio.Future[None]] = {}
        self.closed_reason: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    # ------------------------------------------------------------------ lifetime

    async def connect(self, timeout: float = 10.0) -> Self:
        properties = None
        if self.session_expiry is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry
        # a clean first session; a reconnect resumes it when the broker kept it (session_expiry)
        await self._handshake(lambda: self._client.connect(self.host, self.port, keepalive=self.keepalive,
                                                           clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                                           properties=properties), timeout)
        return self

    async def reconnect(self, timeout: float = 10.0) -> Self:
        """Connect again after a loss, with the same client id (and session, if the broker kept it)."""
        if self._loop is None:
            return await self.connect(timeout)
        self._forget_socket()
        await self._handshake(self._client.reconnect, timeout)
        return self

    async def _handshake(self, start: Callable[[], object], timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        self._disconnected = self._loop.create_future()
        self.closed_reason = None
        try:
            start()
        except OSError as exc:
            raise MqttError(f"cannot connect to the MQTT broker at {self.address}: {exc}") from None
        try:
            await asyncio.wait_for(asyncio.shield(self._connected), timeout)
        except TimeoutError:
            await self.close()
            raise MqttError(f"no CONNACK from the MQTT broker at {self.address} within {timeout} s") from None
        except MqttError:
            await self.close()
            raise

    async def close(self, timeout: float = 2.0) -> None:
        if self._loop is None:
            return
        if self._client.is_connected():
            self._client.disconnect()
            if self._disconnected is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._disconnected), timeout)
                except TimeoutError:
                    self.log.warning("MQTT client %s: no clean disconnect from %s within %s s", self.client_id, self.address, timeout)
        self._forget_socket()
        self._fail_waiters(MqttError(f"MQTT connection {self.client_id} to {self.address} closed"))

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ operations

    async def subscribe(self, topic: str, qos: int = 1, *, no_local: bool = False, timeout: float = 10.0) -> None:
        """Subscribe and wait for the SUBACK; :class:`MqttError` when the broker refuses."""
        rc, mid = self._client.subscribe(topic, options=SubscribeOptions(qos=qos, noLocal=no_local))
        self._check(rc, f"subscribe to {topic!r}")
        codes = await self._await_ack(mid, f"SUBACK for {topic!r}", timeout)
        failed = [c for c in codes if getattr(c, "is_failure", False)]
        if failed:
            raise MqttError(f"the broker at {self.address} refused the subscription to {topic!r}: {failed[0]}")

    async def unsubscribe(self, topic: str, *, timeout: float = 10.0) -> None:
        rc, mid = self._client.unsubscribe(topic)
        self._check(rc, f"unsubscribe from {topic!r}")
        await self._await_ack(mid, f"UNSUBACK for {topic!r}", timeout)

    def unsubscribe_nowait(self, topic: str) -> None:
        if self._client.is_connected():
            self._client.unsubscribe(topic)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        *,
        properties: Properties | None = None,
        retain: bool = False,
    ) -> mqtt.MQTTMessageInfo:
        """Queue a message; it goes out when the loop next runs. Raises :class:`MqttError` when not connected."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        self._check(info.rc, f"publish to {topic!r}")
        return info

    async def publish_acked(self, topic: str, payload: bytes | str, qos: int = 1, *, properties: Properties | None = None, timeout: float = 10.0) -> None:
        """Publish and wait until the broker has it (PUBACK at QoS 1, written to the socket at QoS 0)."""
        assert self._loop is not None
        info = self.publish(topic, payload, qos, properties=properties)
        if info.is_published():
            return
        future = self._published.setdefault(info.mid, self._loop.create_future())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise MqttError(f"the broker at {self.address} did not acknowledge the message to {topic!r} within {timeout} s") from None
        finally:
            self._published.pop(info.mid, None)

    # ------------------------------------------------------------------ paho callbacks

    def _check(self, rc: int, what: str) -> None:
        if rc != mqtt.MQTT_ERR_SUCCESS:
            reason = self.closed_reason or mqtt.error_string(rc)
            raise MqttError(f"MQTT {what} on {self.address} failed: {reason}")

    async def _await_ack(self, mid: int, what: str, timeout: float) -> list:
        assert self._loop is not None
        future = self._acks.setdefault(mid, self._loop.create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise MqttError(f"no {what} from the broker at {self.address} within {timeout} s") from None
        finally:
            self._acks.pop(mid, None)

    def _on_socket_open(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        assert self._loop is not None
        self._sock = sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self.log.debug("TCP_NODELAY not set on the MQTT socket: %s", exc)
        self._loop.add_reader(sock, self._read)
        if self._misc is None or self._misc.done():
            self._misc = self._loop.create_task(self._housekeeping(), name=f"mqtt-misc-{self.client_id}")

    def _on_socket_close(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        self._sock = None

    def _on_register_write(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        if self._loop is not None:
            self._loop.add_writer(sock, self._client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: object, sock: socket.socket) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_writer(sock)

    def _read(self) -> None:
        self._client.loop_read()

    async def _housekeeping(self) -> None:
        # keepalive pings and retries; paho only needs this about once a second
        while self._sock is not None:
            self._client.loop_misc()
            await asyncio.sleep(1.0)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object) -> None:
        if self._connected is None or self._connected.done():
            return
        if getattr(reason, "is_failure", False):
            self._connected.set_exception(MqttError(f"the MQTT broker at {self.address} refused the connection: {reason}"))
            return
        self.session_present = bool(getattr(flags, "session_present", False))
        self._connected.set_result(None)
        if self.on_connected is not None:
            try:
                self.on_connected(self.session_present)
            except Exception:
                self.log.exception("MQTT client %s: on_connected failed", self.client_id)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object) -> None:
        self.closed_reason = f"disconnected ({reason})"
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)
        lost = getattr(reason, "is_failure", False)
        if lost:
            self.log.warning("MQTT client %s lost its connection to %s: %s", self.client_id, self.address, reason)
        self._fail_waiters(MqttError(f"MQTT connection to {self.address} lost: {reason}"))
        if lost and self.on_connection_lost is not None:
            try:
                self.on_connection_lost(str(reason))
            except Exception:
                self.log.exception("MQTT client %s: on_connection_lost failed", self.client_id)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, codes: list, properties: object) -> None:
        self._resolve(mid, codes)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: object, mid: int, codes: list, properties: object) -> None:
        self._resolve(mid, codes)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, properties: object) -> None:
        future = self._published.get(mid)
        if future is not None and not future.done():
            future.set_result(None)

    def _resolve(self, mid: int, codes: list) -> None:
        future = self._acks.get(mid)
        if future is not None and not future.done():
            future.set_result(list(codes) if codes is not None else [])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(message)
        except Exception:
            # a bad message must not tear down the connection's read loop
            self.log.exception("MQTT message handler failed on %s", message.topic)

    def _fail_waiters(self, exc: Exception) -> None:
        for future in [*self._acks.values(), *self._published.values()]:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody may be awaiting it any more
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(exc)
            self._connected.exception()

    def _forget_socket(self) -> None:
        sock = self._client.socket()
        if sock is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        # paho closes its socket on disconnect but keeps its wake-up socket pair open
        self._client._reset_sockets()
        self._sock = None
