"""The gateway's datagram boundary: every datagram in and out of its UDP socket, for a capture.

:func:`tap` wraps the receive callback and the send call of the socket the
gateway's CoAP stack (aiocoap's udp6 transport) owns, so whatever CoAP does
above (retransmissions, Block1, observe, duplicates) the sink sees the
datagrams exactly as they crossed, with both addresses. Nothing is changed
on the way: the sink only reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HostPort = tuple[str, int]
DatagramSink = Callable[[HostPort, HostPort, bytes], None]  # (source, destination, payload)


def _message_interface(gateway: Any) -> Any:
    return gateway.context.request_interfaces[0].token_interface.message_interface


def tap(gateway: Any, sink: DatagramSink) -> Callable[[], None]:
    """Report every datagram of the running ``gateway`` to ``sink``; returns a function that stops it."""
    interface = _message_interface(gateway)
    transport = interface.transport
    local = (gateway.host, gateway.port)
    received, send = interface.datagram_msg_received, transport.sendmsg

    def on_received(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        _report(sink, (address[0], address[1]), local, data)
        received(data, ancdata, flags, address)

    def on_send(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        send(data, ancdata, flags, address)
        _report(sink, local, (address[0], address[1]), data)

    # Instance attributes shadow the class's methods: the transport calls these from now on.
    interface.datagram_msg_received = on_received
    transport.sendmsg = on_send

    def untap() -> None:
        interface.__dict__.pop("datagram_msg_received", None)
        transport.__dict__.pop("sendmsg", None)

    return untap


def _report(sink: DatagramSink, src: HostPort, dst: HostPort, data: bytes) -> None:
    try:
        sink(src, dst, data)
    except Exception:  # noqa: BLE001 - a capture must never cost the gateway a datagram
        pass
