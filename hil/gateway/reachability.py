"""Which registered devices the gateway can reach right now.

A device is marked unreachable (event ``unreachable``, ``Registration.reachable``
False, with what was seen) as soon as an ICMP error comes back for its
address or a request to it used up every retransmission; that is long before
its registration's lifetime runs out. Any datagram from it marks it
reachable again (event ``reachable``).
"""

from __future__ import annotations

import logging
from typing import Any

from .registry import Registry


def address_key(remote: Any) -> tuple[Any, ...] | None:
    """What identifies a device's address: (host, port) of an aiocoap remote's or a plain socket address."""
    sockaddr = getattr(remote, "sockaddr", remote)
    return tuple(sockaddr[:2]) if sockaddr else None


class Reachability:
    def __init__(self, registry: Registry, log: logging.Logger):
        self.registry = registry
        self.log = log
        self._down: dict[tuple[Any, ...], str] = {}  # address -> registration id marked unreachable

    def unreachable(self, remote: Any, reason: str) -> None:
        key = address_key(remote)
        for reg in list(self.registry.by_endpoint.values()):
            if key is not None and address_key(reg.remote) == key:
                self._down[key] = reg.registration_id
                self.registry.set_reachable(reg.registration_id, False, reason)

    def silent(self, remote: Any, seen: str) -> None:
        self.unreachable(remote, f"no answer: {seen}")

    def heard(self, address: Any) -> None:
        """A datagram came from ``address`` (a socket address or an aiocoap remote)."""
        if not self._down:
            return
        registration_id = self._down.pop(address_key(address) or (), None)
        if registration_id is not None:
            self.registry.set_reachable(registration_id, True, "heard from it again")
