"""LwM2M 1.1 Send on the gateway: ``POST /dp`` from a registered client.

The client pushes values it chose (1.1 Core 6.4, Information Reporting) as
SenML JSON or SenML CBOR; the gateway answers 2.04 Changed and hands the
values to its report listeners as a :class:`~hil.gateway.observe.Notification`
of kind "send", so whatever listens to notifications hears of them. The
sender is known by its address: a Send from an address no registration came
from is refused with 4.04 (register first), one in another format with 4.15,
one that does not decode with 4.00.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiocoap import Message
from aiocoap.numbers.codes import Code

from ..lwm2m import codecs
from ..lwm2m.codecs import SENML_FORMATS
from ..lwm2m.model import LwM2MError
from .observe import Notification
from .rd import Rejected, remote_address
from .registry import Registration, RegistrationEvent, Registry


class SendInterface:
    """Serves ``/dp``; ``report`` receives every accepted Send."""

    def __init__(self, registry: Registry, report: Callable[[Notification], None], log: logging.Logger):
        self.registry = registry
        self.report = report
        self.log = log
        self.received = 0
        self.security: Any = None  # hil.gateway.dtls.PskBinding, set by the gateway when it has a PSK table
        self._by_address: dict[tuple[str, int], str] = {}  # address -> endpoint
        registry.add_listener(self._on_registration)

    def _on_registration(self, event: RegistrationEvent) -> None:
        reg = event.registration
        if event.kind in ("registered", "updated"):
            for address in [a for a, ep in self._by_address.items() if ep == reg.endpoint and a != reg.address]:
                del self._by_address[address]
            self._by_address[reg.address] = reg.endpoint
        elif self._by_address.get(reg.address) == reg.endpoint:
            del self._by_address[reg.address]

    def sender(self, request: Message) -> Registration:
        address = remote_address(request.remote)
        endpoint = self._by_address.get(address)
        reg = self.registry.by_endpoint.get(endpoint) if endpoint is not None else None
        if reg is None:
            host, port = address
            raise Rejected(Code.NOT_FOUND, f"Send from {host}:{port}: no client is registered from this address; register first")
        return reg

    def render(self, request: Message) -> Message:
        if request.code != Code.POST:
            raise Rejected(Code.METHOD_NOT_ALLOWED, f"{request.code} is not allowed on /dp: Send is POST")
        reg = self.sender(request)
        if self.security is not None:
            self.security.check_same(reg, request.remote, "a Send")
        ct = request.opt.content_format
        fmt = None if ct is None else int(ct)
        if fmt not in SENML_FORMATS:
            raise Rejected(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                f"Send from {reg.endpoint} in content format {fmt}: Send carries SenML JSON (110) or SenML CBOR (112)",
            )
        try:
            content = codecs.decode(bytes(request.payload), None, fmt)
        except LwM2MError as exc:
            raise Rejected(Code.BAD_REQUEST, f"Send from {reg.endpoint}: the SenML (content format {fmt}) does not decode: {exc}") from None
        if not content:
            raise Rejected(Code.BAD_REQUEST, f"Send from {reg.endpoint} carries no value")
        self.received += 1
        self.report(Notification(reg.endpoint, None, content, time.time(), None, fmt, kind="send",
                                 message_id=request.mid, token=bytes(request.token or b"")))
        return Message(code=Code.CHANGED)
