"""The gateway's CoAP site: ``/rd`` is the registration interface, ``/dp`` takes Sends."""

from __future__ import annotations

import logging

from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.resource import PathCapable, Resource

from .rd import Rejected, RegistrationInterface
from .send import SendInterface


class GatewaySite(PathCapable, Resource):
    def __init__(self, registration: RegistrationInterface, send: SendInterface, log: logging.Logger):
        super().__init__()
        self.registration = registration
        self.send = send
        self.log = log

    async def render(self, request: Message) -> Message:
        if tuple(request.opt.uri_path) != ("dp",):
            return await self.registration.render(request)
        try:
            return self.send.render(request)
        except Rejected as exc:
            self.log.warning("Send from %s refused with %s: %s", getattr(request.remote, "hostinfo", request.remote), exc.code, exc.reason)
            return Message(code=exc.code, payload=exc.reason.encode("utf-8"))
        except Exception as exc:  # a bug here must not take the server down
            self.log.exception("Send handling failed on %s", request)
            return Message(code=Code.INTERNAL_SERVER_ERROR, payload=f"gateway error: {exc}".encode("utf-8"))
