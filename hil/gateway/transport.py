"""The gateway's UDP socket, where datagrams meet aiocoap: nothing hostile gets through, nothing is misattributed.

:class:`DatagramGuard` wraps aiocoap's udp6 message interface of one
context (instance attributes; aiocoap's installed files stay as they are):

Receiving
    Every datagram is first decoded here. One aiocoap cannot decode (a
    string option that is not UTF-8 raises ``UnicodeDecodeError`` inside
    aiocoap's receive callback, which would reach asyncio's exception
    handler) is answered as RFC 7252 says and dropped: a confirmable request
    with an option value it cannot take gets 4.02 Bad Option when the option
    is critical, 4.00 Bad Request otherwise, both naming the option (section
    5.4); a confirmable message with a format error (or one that is no
    request) gets a Reset (section 4.2); the rest is silently dropped. A non-confirmable notification for an observation nobody holds
    any more gets a Reset (RFC 7641 section 3.6), so the device stops
    sending it. Every datagram tells the gateway its sender is alive
    (``on_heard``, with the sender's socket address). aiocoap decodes each
    datagram once; only one it failed on is looked at again here.

Sending
    All devices share one unconnected socket with ``IP_RECVERR`` on. An ICMP
    port-unreachable for one device leaves a pending error on the socket,
    and Linux returns it from the *next* ``sendmsg``, whoever that is for,
    without sending it: aiocoap then failed a healthy device's request.
    Here such a send is simply repeated (the pending error is consumed by
    the failed call); the ICMP error itself is still read from the error
    queue with the address it concerns, and reported (``on_unreachable``)
    besides failing that device's requests.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from typing import Any, Callable, Iterator

from aiocoap import Message
from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import ACK, CON, NON, RST
from aiocoap.util import socknumbers

# errors that an unconnected UDP socket only reports on behalf of an earlier datagram
ASYNC_SOCKET_ERRORS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EPROTO}
ICMP_MEANING = {
    errno.ECONNREFUSED: "ICMP port unreachable: nothing listens on the device's port (down, rebooting or closed)",
    errno.EHOSTUNREACH: "ICMP host unreachable: no route to the device",
    errno.ENETUNREACH: "ICMP network unreachable",
    errno.EHOSTDOWN: "host is down",
}

RemoteListener = Callable[[Any], None]  # called with the socket address a datagram came from
UnreachableListener = Callable[[Any, str], None]


def icmp_reason(exc: BaseException | None) -> str | None:
    """What an ICMP error that failed a request means, or None if ``exc`` is none."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno is not None:
            return ICMP_MEANING.get(exc.errno, f"{os.strerror(exc.errno)} (errno {errno.errorcode.get(exc.errno, exc.errno)})")
        exc = exc.__cause__
    return None


class _Malformed(Exception):
    """A message format error (RFC 7252 section 3): bad option framing, a payload marker with no payload."""


def _options(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """(number, value) of each option from ``start`` to the payload; raises :class:`_Malformed` on a framing error."""
    number, at = 0, start
    while at < len(data):
        if data[at] == 0xFF:
            if at + 1 == len(data):
                raise _Malformed("payload marker without a payload")
            return
        delta, length = data[at] >> 4, data[at] & 0x0F
        at += 1
        fields = []
        for nibble in (delta, length):
            if nibble == 13 and at < len(data):
                fields.append(13 + data[at])
                at += 1
            elif nibble == 14 and at + 1 < len(data):
                fields.append(269 + (data[at] << 8 | data[at + 1]))
                at += 2
            elif nibble < 13:
                fields.append(nibble)
            else:
                raise _Malformed(f"option header at byte {at - 1} is cut short or uses the reserved nibble 15")
        number += fields[0]
        value = data[at : at + fields[1]]
        if len(value) != fields[1]:
            raise _Malformed(f"option {number} announces {fields[1]} bytes, {len(value)} follow")
        at += fields[1]
        yield number, value


def _format_error(data: bytes) -> str | None:
    """What makes ``data`` no CoAP message at all (None when it is one; version 1 assumed)."""
    tkl = data[0] & 0x0F
    if tkl > 8:
        return f"token length {tkl} (at most 8)"
    if len(data) < 4 + tkl:
        return "shorter than its token"
    if data[1] == 0 and len(data) != 4:  # an Empty message is the header alone (section 4.1)
        return "an Empty message with more than the header"
    try:
        for _ in _options(data, 4 + tkl):
            pass
    except _Malformed as exc:
        return str(exc)
    return None


def _invalid_option(data: bytes, start: int) -> tuple[int, str] | None:
    """The first option whose value aiocoap cannot decode, with why."""
    try:
        for number, value in _options(data, start):
            try:
                OptionNumber(number).create_option(decode=value)
            except Exception as exc:  # whatever the option type raises for a bad value
                return number, f"{type(exc).__name__}: {exc}"
    except _Malformed:
        pass
    return None


def _option_name(number: int) -> str:
    """``Uri-Path (11)``."""
    name = getattr(OptionNumber(number), "name", None)
    if not name or name.startswith("<"):
        return str(number)
    return f"{name.replace('_', ' ').title().replace(' ', '-')} ({number})"


class DatagramGuard:
    """See the module docs; ``refused`` counts datagrams answered or dropped here."""

    def __init__(
        self,
        context: Any,
        log: logging.Logger,
        *,
        on_heard: RemoteListener,
        on_unreachable: UnreachableListener,
    ):
        tokens = context.request_interfaces[0]
        self._tokens = tokens
        self._iface = tokens.token_interface.message_interface
        self._sock = self._iface.transport.get_extra_info("socket")
        self.log = log
        self._on_heard = on_heard
        self._on_unreachable = on_unreachable
        self.refused = 0  # undecodable datagrams
        self.resets = 0  # Resets sent for notifications nobody wants
        self.resent = 0  # sends repeated after another device's pending ICMP error
        self._original_received = self._iface.datagram_msg_received
        self._original_errqueue = self._iface.datagram_errqueue_received
        self._iface.datagram_msg_received = self._received
        self._iface.datagram_errqueue_received = self._errqueue
        self._iface.transport.sendmsg = self._sendmsg

    # ------------------------------------------------------------------ receiving

    def _received(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        if len(data) < 4 or data[0] >> 6 != 1:
            self.refused += 1  # too short for a header, or another CoAP version: silently ignored (section 3)
            return
        problem = _format_error(data)
        if problem is not None:
            self._refuse(data, address, coap_error.UnparsableMessage(problem), format_error=True)
            return
        try:
            self._original_received(data, ancdata, flags, address)
        except Exception as exc:
            # Either aiocoap could not decode it (nothing was dispatched), or a
            # handler failed after aiocoap logged it: decoding again tells which.
            try:
                Message.decode(data)
            except Exception as decode_error:
                self._refuse(data, address, decode_error, format_error=isinstance(decode_error, coap_error.UnparsableMessage))
            else:
                self.log.debug("dispatch failed for a datagram from %s: %r", _address_text(address), exc)
            return
        self._heard(address)
        mtype, tkl, code = (data[0] >> 4) & 3, data[0] & 0x0F, data[1]
        if mtype == NON and code >= 64 and any(n == 6 for n, _ in _options(data, 4 + tkl)):
            # a notification: is anyone still observing it?
            remote = self._remote(address)
            if (bytes(data[4 : 4 + tkl]), remote) not in (self._tokens.outgoing_requests or {}):
                self._send_empty(RST, data[2] << 8 | data[3], remote)
                self.resets += 1

    def _remote(self, address: Any) -> Any:
        from aiocoap.transports.udp6 import UDP6EndpointAddress  # aiocoap's own remote type for this interface

        return UDP6EndpointAddress(address, self._iface)

    def _heard(self, address: Any) -> None:
        try:
            self._on_heard(address)
        except Exception:
            self.log.exception("heard-from listener failed for %s", _address_text(address))

    def _refuse(self, data: bytes, address: Any, exc: Exception, format_error: bool = False) -> None:
        self.refused += 1
        sender = _address_text(address)
        if len(data) < 4 or data[0] >> 6 != 1:
            return
        mtype, tkl, code, mid = (data[0] >> 4) & 3, data[0] & 0x0F, data[1], data[2] << 8 | data[3]
        bad = _invalid_option(data, 4 + tkl) if tkl <= 8 else None
        what = f"option {_option_name(bad[0])}: {bad[1]}" if bad else f"{type(exc).__name__}: {exc}"
        self.log.info("undecodable datagram from %s (%d bytes, type %d, code %d.%02d): %s",
                      sender, len(data), mtype, code >> 5, code & 31, what)
        if mtype != CON:
            return
        remote = self._remote(address)
        is_request = 1 <= code <= 31
        if format_error or not is_request or tkl > 8:  # RFC 7252 4.2: a malformed confirmable message gets a Reset
            self._send_empty(RST, mid, remote)
            return
        answer = Message(code=Code.BAD_OPTION if bad and bad[0] & 1 else Code.BAD_REQUEST,
                         payload=f"malformed request: {what}".encode("utf-8", "replace")[:200])
        answer.mtype, answer.mid, answer.token, answer.remote = ACK, mid, bytes(data[4 : 4 + tkl]), remote
        self._send(answer)

    def _send_empty(self, mtype: Any, mid: int, remote: Any) -> None:
        message = Message(code=Code.EMPTY)
        message.mtype, message.mid, message.remote = mtype, mid, remote
        self._send(message)

    def _send(self, message: Any) -> None:
        try:
            self._sendmsg(message.encode(), [], 0, message.remote.sockaddr)
        except Exception as exc:
            self.log.debug("could not answer %s: %s", message.remote, exc)

    def _errqueue(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        remote = self._remote(address)
        reason = None
        for level, kind, value in ancdata:
            if kind in (socknumbers.IPV6_RECVERR, socknumbers.IP_RECVERR) and len(value) >= 4:
                code = int.from_bytes(value[:4], sys.byteorder)  # struct sock_extended_err: ee_errno first
                reason = icmp_reason(OSError(code, os.strerror(code)))
        try:
            self._original_errqueue(data, ancdata, flags, address)
        except Exception:
            self.log.exception("aiocoap failed on an ICMP error from %s", _address_text(address))
        try:
            self._on_unreachable(remote, reason or "an ICMP error came back")
        except Exception:
            self.log.exception("unreachable listener failed for %s", _address_text(address))

    # ------------------------------------------------------------------ sending

    def _sendmsg(self, data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        for attempt in (1, 2):
            try:
                self._sock.sendmsg((data,), ancdata, flags, address)
                return
            except (BlockingIOError, InterruptedError):
                self.log.debug("send buffer full: datagram to %s dropped (CoAP retransmits)", _address_text(address))
                return
            except OSError as exc:
                if exc.errno in ASYNC_SOCKET_ERRORS and attempt == 1:
                    self.resent += 1  # another datagram's ICMP error; this one was not sent
                    continue
                self._iface.error_received(exc)
                return


def remote_for(context: Any, host: str, port: int) -> Any:
    """aiocoap's remote for a device at host:port on ``context``'s socket (e.g. one the gateway remembers)."""
    from aiocoap.transports.udp6 import UDP6EndpointAddress

    sockaddr = socket.getaddrinfo(host, port, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_V4MAPPED)[0][4]
    return UDP6EndpointAddress(sockaddr, context.request_interfaces[0].token_interface.message_interface)


def _address_text(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    host = str(host).removeprefix("::ffff:")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
