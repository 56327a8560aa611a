"""A real MQTT broker: Debian's ``mosquitto``, on a free loopback port.

Generated config: one loopback listener, anonymous access, TCP_NODELAY,
no persistence, log to stderr (captured in :attr:`Broker.log_path`). Ready
when an MQTT v5 CONNECT is answered by a successful CONNACK::

    with Broker(log_dir=tmp_path) as broker:
        client.connect(broker.host, broker.port)
"""

from __future__ import annotations

import os
import time

import paho.mqtt.client as mqtt

from .process import ManagedProcess, NotReady


class Broker(ManagedProcess):
    name = "mosquitto"
    apt_package = "mosquitto"
    binary_name = "mosquitto"
    binary_candidates = ("/usr/sbin/mosquitto",)

    def __init__(
        self,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        super().__init__(log_dir=log_dir, port=port, ready_timeout=ready_timeout)
        self.config_path = self.log_path.with_suffix(".conf")

    @property
    def url(self) -> str:
        return f"mqtt://{self.address}"

    def config(self, port: int) -> str:
        return "\n".join(
            [
                f"listener {port} {self.host}",
                "allow_anonymous true",
                "set_tcp_nodelay true",
                "persistence false",
                # a fleet of a thousand nodes announces in one burst: the default
                # queue of 1000 QoS 1 messages per client drops announces to a slow watcher
                "max_queued_messages 100000",
                # stderr goes to our log file; mosquitto drops root privileges
                # before it would open a log file of its own
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "",
            ]
        )

    def prepare(self, port: int) -> list[str]:
        binary = self.binary()
        self.config_path.write_text(self.config(port))
        return [binary, "-c", str(self.config_path)]

    def probe(self) -> None:
        outcome: dict[str, object] = {}

        def on_connect(client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
            outcome["reason"] = reason_code

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"embserve-hil-probe-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        client.on_connect = on_connect
        client.connect_timeout = 1.0
        try:
            client.connect(self.host, self.port, keepalive=10)
            deadline = time.monotonic() + 1.0
            while "reason" not in outcome and time.monotonic() < deadline:
                client.loop(timeout=0.05)
        except OSError as exc:
            raise NotReady(f"MQTT connect to {self.address}: {exc}") from None
        finally:
            _close(client)
        reason = outcome.get("reason")
        if reason is None:
            raise NotReady(f"no CONNACK from {self.address} within 1s")
        if getattr(reason, "is_failure", False):
            raise NotReady(f"CONNACK from {self.address} refused: {reason}")


def _close(client: mqtt.Client) -> None:
    """Send DISCONNECT if connected and close the probe's socket."""
    if client.is_connected():
        client.disconnect()
    sock = client.socket()
    if sock is not None:
        sock.close()
