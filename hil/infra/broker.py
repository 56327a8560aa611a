"""A real MQTT broker: Debian's ``mosquitto``, on a free port.

Generated config: one listener, TCP_NODELAY, no persistence, log to stderr
(captured in :attr:`Broker.log_path`). Ready when an MQTT v5 CONNECT is
answered by a successful CONNACK::

    with Broker(log_dir=tmp_path) as broker:
        client.connect(broker.host, broker.port)

With ``users`` ({name: password}) anonymous clients are refused and a
password file in mosquitto's own format (PBKDF2-SHA512, ``$7$``; what
``mosquitto_passwd`` writes) lets those users in; with ``tls`` (a
:class:`~hil.infra.certs.ServerCertificate`) the listener speaks TLS only.
:attr:`Broker.client_login` is what the harness's own clients connect with.
Without users the broker is open (``allow_anonymous true``): fine on
loopback, refused beyond it unless ``insecure_open``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import ssl
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import paho.mqtt.client as mqtt

from ..secret import Secret, reveal, write_private
from .certs import ServerCertificate
from .ports import is_loopback_host
from .process import InfraError, ManagedProcess, NotReady

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's own default for $7$ (it checks whatever count the line names)
SALT_BYTES = 12


def password_line(user: str, password: str | Secret, *, iterations: int = PBKDF2_ITERATIONS,
                  salt: bytes | None = None) -> str:
    """One line of a mosquitto password file: ``user:$7$ITERATIONS$SALT$HASH`` (PBKDF2-HMAC-SHA512, base64)."""
    if not user or ":" in user or "\n" in user:
        raise ValueError(f"MQTT user name {user!r}: non-empty, no ':' or line break")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", str(reveal(password)).encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


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
        host: str = "127.0.0.1",
        users: Mapping[str, str | Secret] | None = None,
        tls: ServerCertificate | None = None,
        insecure_open: bool = False,
    ) -> None:
        super().__init__(log_dir=log_dir, host=host, port=port, ready_timeout=ready_timeout)
        if not users and not insecure_open and not is_loopback_host(host):
            raise InfraError(
                f"refusing to start an MQTT broker open to anyone on {host}: give it users (a password file) "
                "and a TLS certificate, or pass --insecure-open to allow anonymous clients on purpose"
            )
        self.users = {name: Secret(password) for name, password in (users or {}).items()}
        self.tls = tls
        self.config_path = self.log_path.with_suffix(".conf")
        self._private_dir: Path | None = None  # password file and TLS key, readable by the broker alone

    @property
    def client_login(self) -> tuple[str | None, Secret | None, Path | None]:
        """How the harness's own clients get in: (user, password, CA file), e.g. for ``hil.fita.mqtt.MqttAuth(*login)``."""
        user, password = next(iter(self.users.items()), (None, None))
        return user, password, self.tls.cert if self.tls else None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.address}"

    @property
    def password_path(self) -> Path:
        return self._private().joinpath("passwd")

    def _private(self) -> Path:
        if self._private_dir is None:
            self._private_dir = Path(tempfile.mkdtemp(prefix="embserve-hil-mosquitto-"))
            _give_to_broker(self._private_dir)
        return self._private_dir

    def config(self, port: int) -> str:
        key = self._private() / "key.pem" if self.tls else None
        access = ["allow_anonymous false", f"password_file {self.password_path}"] if self.users else ["allow_anonymous true"]
        tls = [f"certfile {self._private() / 'cert.pem'}", f"keyfile {key}"] if self.tls else []
        return "\n".join(
            [
                f"listener {port} {self.host}",
                *tls,
                *access,
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
        if self.users:
            write_private(self.password_path, "".join(password_line(u, p) + "\n" for u, p in self.users.items()).encode())
            _give_to_broker(self.password_path)
        if self.tls:
            # copies the broker may read after it dropped root; the originals stay the caller's
            for name, source in (("cert.pem", self.tls.cert), ("key.pem", self.tls.key)):
                write_private(self._private() / name, Path(source).read_bytes())
                _give_to_broker(self._private() / name)
        self.config_path.write_text(self.config(port))
        return [binary, "-c", str(self.config_path)]

    def cleanup(self) -> None:
        private, self._private_dir = self._private_dir, None
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)

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
        user, password, ca_file = self.client_login
        if user:
            client.username_pw_set(user, reveal(password))
        if ca_file:
            client.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
        try:
            client.connect(self.host, self.port, keepalive=10)
            deadline = time.monotonic() + 1.0
            while "reason" not in outcome and time.monotonic() < deadline:
                client.loop(timeout=0.05)
        except OSError as exc:  # ssl.SSLError too
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


def _give_to_broker(path: os.PathLike[str]) -> None:
    """mosquitto started as root reads its files as the ``mosquitto`` user it drops to: hand them over (0600/0700 kept)."""
    if os.geteuid() != 0:
        return
    try:
        import pwd

        account = pwd.getpwnam("mosquitto")
    except (ImportError, KeyError):
        return
    os.chown(path, account.pw_uid, account.pw_gid)
