"""Real infrastructure processes on free loopback ports: the OCI registry
(Debian ``docker-registry``) and the MQTT broker (``mosquitto``)."""

from .broker import Broker
from .ports import free_port, unused_port
from .process import InfraError, ManagedProcess, MissingBinaryError, NotReady, StartupError
from .registry import Registry, TokenAuth

__all__ = [
    "Broker", "InfraError", "ManagedProcess", "MissingBinaryError", "NotReady", "Registry",
    "StartupError", "TokenAuth", "free_port", "unused_port",
]
