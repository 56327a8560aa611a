"""A device's CoAP answers, turned into results or into the gateway error they amount to.

Shared by the gateway's requests (:mod:`hil.gateway.server`) and its
observations (:mod:`hil.gateway.observe`), so a refused read and a refused
notification read the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiocoap import Message
from aiocoap import error as coap_error

from ..lwm2m import codecs
from ..lwm2m.model import Content, LwM2MError, Path
from .errors import GatewayDecodeError, GatewayRequestError, GatewayTimeout, GatewayTransportError
from .transport import icmp_reason


async def await_answer(pending: Awaitable[Message], endpoint: str, path: Path | str, operation: str, timeout: float) -> Message:
    """The device's answer, or what was seen instead.

    :class:`GatewayTimeout` when nothing came back (within ``timeout``, or
    after every retransmission), :class:`GatewayTransportError` when the
    request could not be delivered (an ICMP error names its meaning). Either
    way the request is abandoned: nothing more is sent for it.
    """
    try:
        return await asyncio.wait_for(pending, timeout)
    except asyncio.TimeoutError:
        raise GatewayTimeout(
            f"{endpoint}: {operation} {path} got no answer within {timeout:g} s",
            endpoint=endpoint,
            path=str(path),
            timeout=timeout,
        ) from None
    except coap_error.ConRetransmitsExceeded as exc:
        seen = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "every retransmission went unanswered"
        raise GatewayTimeout(
            f"{endpoint}: {operation} {path} got no answer: {seen}", endpoint=endpoint, path=str(path), timeout=timeout
        ) from None
    except coap_error.Error as exc:
        reason = icmp_reason(exc.__cause__) or str(exc) or type(exc).__name__
        raise GatewayTransportError(endpoint, str(path), reason, operation) from exc


def raise_for_code(response: Message, endpoint: str, path: Path | str, operation: str) -> None:
    """:class:`GatewayRequestError` (with the device's diagnostic) unless the code is 2.xx."""
    if not response.code.is_successful():
        diagnostic = response.payload.decode("utf-8", "replace") if response.payload else ""
        raise GatewayRequestError(endpoint, str(path), str(response.code), diagnostic, operation, int(response.code))


def decode(response: Message, endpoint: str, path: Path | None, where: Path | str | None = None) -> Content:
    """The answer's payload as ``{Path: value}``, by its Content-Format; :class:`GatewayDecodeError` if it does not decode.

    ``path`` None: the answer names its own paths (composite operations, SenML only).
    """
    ct = response.opt.content_format
    fmt = None if ct is None else int(ct)
    if not response.payload:
        return {}
    try:
        return codecs.decode(response.payload, path, fmt)
    except LwM2MError as exc:
        raise GatewayDecodeError(endpoint, str(where if where is not None else path), fmt, str(exc)) from None
