"""Free loopback ports chosen by the OS.

The port is released before the caller's process binds it, so another
process can take it in between; callers that start servers retry with a new
port when the server reports the address in use (see
:class:`hil.infra.process.ManagedProcess`).
"""

from __future__ import annotations

import ipaddress
import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK, kind: int = socket.SOCK_STREAM) -> int:
    """A port on ``host`` that the OS says is free right now (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def unused_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` nobody listens on (for "registry down" style tests).

    Same as :func:`free_port`; named for the intent at the call site.
    """
    return free_port(host)


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` keeps a service on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
