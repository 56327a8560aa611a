"""aiocoap on a UDP socket made elsewhere, e.g. inside a network namespace this process is not in."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiocoap
from aiocoap.transports.udp6 import MessageInterfaceUDP6


async def server_context_on(sock: socket.socket, site: Any, loggername: str) -> Any:
    """An aiocoap server context serving ``site`` on ``sock``, a bound UDP socket made elsewhere.

    For a socket that must be created where this process is not, such as
    inside a network namespace (:meth:`hil.infra.netns.NetworkNamespace.udp_socket`).
    It must be IPv6 with IPV6_V6ONLY off (v4-mapped addresses), like the
    sockets aiocoap's udp6 transport makes. aiocoap has no public call for
    this: it is what ``create_server_context(transports=["udp6"])`` does,
    with the socket given instead of one bound by aiocoap.
    """
    if sock.family != socket.AF_INET6 or sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
        raise ValueError(f"{sock.getsockname()}: a CoAP socket here must be IPv6 with v4-mapped addresses")
    loop = asyncio.get_running_loop()
    context = aiocoap.Context(loop=loop, serversite=site, loggername=loggername)
    log = context.log
    await context._append_tokenmanaged_messagemanaged_transport(
        lambda mman: MessageInterfaceUDP6._create_transport_endpoint(sock, mman, log, loop)
    )
    return context

