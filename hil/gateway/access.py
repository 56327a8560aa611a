"""Who may use the gateway's HTTP listeners (the REST API, the fleet page): a bearer token beyond loopback.

:func:`require_token` refuses to serve beyond loopback without a token (one
line saying how to give one) unless ``insecure_open``. :class:`TokenGate` is
the aiohttp middleware: every request carries ``Authorization: Bearer
<token>``, or, for a browser opening the fleet page, HTTP Basic with the
token as the password (any user name; the browser asks once and sends it
with the page's own requests); anything else is HTTP 401 with both
challenges. Tokens are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..infra.ports import is_loopback_host
from ..secret import Secret

CHALLENGE = 'Bearer realm="embserve-hil", Basic realm="embserve-hil (any user, the API token as password)"'


class OpenApiRefused(ValueError):
    """An HTTP listener would serve beyond loopback with no token: the message says how to give one."""


def require_token(what: str, host: str, token: object, insecure_open: bool) -> None:
    if token is None and not insecure_open and not is_loopback_host(host):
        raise OpenApiRefused(
            f"refusing to serve the {what} on {host} without authentication: give --api-token-file FILE "
            "(or let the command generate one), or pass --insecure-open to serve it open on purpose"
        )


class TokenGate:
    """aiohttp middleware letting through requests that carry the token (see the module docs)."""

    def __init__(self, token: Secret | str, log: logging.Logger, refuse: Callable[[str], web.StreamResponse]):
        """``refuse(reason)`` builds the 401 answer (the REST API answers in its Leshan envelope)."""
        self._token = (token if isinstance(token, Secret) else Secret(token)).reveal().encode()
        self.log = log
        self._refuse = refuse
        self.refused = 0

    def given(self, header: str) -> tuple[bytes | None, str]:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip().encode(), "wrong bearer token"
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, "malformed basic credentials"
            return password.encode(), "wrong token as basic password"
        return None, "no bearer token"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        given, why = self.given(request.headers.get("Authorization", ""))
        if given is not None and hmac.compare_digest(given, self._token):
            return await handler(request)
        self.refused += 1
        self.log.warning("HTTP %s %s from %s refused: %s", request.method, request.path, request.remote, why)
        answer = self._refuse(f"{why}: send 'Authorization: Bearer <token>'")
        answer.headers["WWW-Authenticate"] = CHALLENGE
        return answer
