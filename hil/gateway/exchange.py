"""CoAP exchanges from the gateway to its devices: timing, abandoning, and who is to blame.

RFC 7252 sets the pace of a confirmable request with its transmission
parameters (:class:`hil.lwm2m.transmission.TransmissionParameters`); the gateway derives every
per-exchange timeout from them, so a request waits for all of its
retransmissions and no longer. Slow links (SLIP at 9600 baud, a radio) get
larger values, loopback tests smaller ones (``ack_timeout=0.05``).

aiocoap runs the message layer; :class:`DeviceExchanges` changes three of
its habits that hurt a gateway with many devices on one socket:

* A request whose caller gave up (timed out, cancelled) is *abandoned*: its
  retransmissions stop and the next request to that device, queued behind
  it (NSTART = 1), goes out at once. aiocoap would keep retransmitting it
  for up to MAX_TRANSMIT_WAIT (93 s) and hold the device's queue meanwhile.
* A request whose retransmissions run out fails alone, with the number of
  transmissions and the time they took; aiocoap would fail every request to
  that device, even those still queued and never sent.
* Each exhausted request is reported (``on_silent``) so the gateway can mark
  the device unreachable.

It reaches into aiocoap's message and token managers (their per-instance
methods are replaced, nothing installed is modified); :func:`check_aiocoap`
says precisely what is missing should a new aiocoap change them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from aiocoap import error as coap_error
from aiocoap.numbers.types import CON

from ..lwm2m.transmission import TransmissionParameters

SilentListener = Callable[[Any, str], None]  # (aiocoap remote, what was seen)
__all__ = ["AiocoapChanged", "DeviceExchanges", "TransmissionParameters", "check_aiocoap"]


class AiocoapChanged(RuntimeError):
    """The installed aiocoap lacks an internal the gateway's exchange layer relies on."""


def check_aiocoap(token_manager: Any, message_manager: Any) -> None:
    """Raise :class:`AiocoapChanged` naming what is missing, before anything is changed."""
    needed = {
        token_manager: ("request", "outgoing_requests"),
        message_manager: ("_active_exchanges", "_backlogs", "_continue_backlog", "_retransmit"),
    }
    for owner, names in needed.items():
        for name in names:
            if not hasattr(owner, name):
                import aiocoap

                raise AiocoapChanged(
                    f"aiocoap {getattr(aiocoap.meta, 'version', '?')}: {type(owner).__name__} has no {name!r}; "
                    "the gateway's exchange layer (hil/gateway/exchange.py) needs updating for this aiocoap"
                )


class DeviceExchanges:
    """The gateway's confirmable requests, abandoned when their caller gives up (see the module docs)."""

    def __init__(self, context: Any, params: TransmissionParameters, log: logging.Logger, on_silent: SilentListener):
        self.params = params
        self.log = log
        self._on_silent = on_silent
        self._tokens = context.request_interfaces[0]
        self._messages = self._tokens.token_interface
        check_aiocoap(self._tokens, self._messages)
        self.abandoned = 0  # requests whose retransmissions stopped because nobody waited any more
        self.exhausted = 0  # requests that used up every retransmission
        self._original_request = self._tokens.request
        self._original_retransmit = self._messages._retransmit
        self._tokens.request = self._request
        self._messages._retransmit = self._retransmit

    def _request(self, pipe: Any) -> None:
        self._original_request(pipe)
        message = pipe.request
        if message.mid is not None and message.mtype is CON:
            # interest ends with the final answer, or when the caller stops waiting
            pipe.on_interest_end(lambda: self._abandon(message))

    def _abandon(self, message: Any) -> None:
        """Stop retransmitting ``message`` if it is still unacknowledged, and let the device's queue move on."""
        active = self._messages._active_exchanges
        if active is None:
            return  # shutting down
        key = (message.remote, message.mid)
        entry = active.pop(key, None)
        if entry is not None:
            entry[1].cancel()
            self.abandoned += 1
            self.log.debug("abandoned request %s (MID %d) to %s", message.code, message.mid, message.remote)
            self._messages._continue_backlog(message.remote)
            return
        backlog = self._messages._backlogs.get(message.remote)
        if backlog:
            kept = [item for item in backlog if item[0] is not message]
            if len(kept) != len(backlog):
                self.abandoned += 1
                backlog[:] = kept

    def _retransmit(self, message: Any, timeout: float, counter: int) -> None:
        if counter < message.transport_tuning.MAX_RETRANSMIT:
            self._original_retransmit(message, timeout, counter)
            return
        key = (message.remote, message.mid)
        entry = self._messages._active_exchanges.pop(key, None)
        if entry is None:
            return
        monitor, handle = entry
        handle.cancel()
        self.exhausted += 1
        tuning = message.transport_tuning
        span = timeout * 2 - timeout / 2**counter  # the first timeout doubled `counter` times, summed
        seen = (f"no acknowledgement after {counter + 1} transmissions in {span:.3g} s "
                f"(ACK_TIMEOUT {tuning.ACK_TIMEOUT:g} s, MAX_RETRANSMIT {tuning.MAX_RETRANSMIT})")
        request = self._tokens.outgoing_requests.get((message.token, message.remote)) if message.code.is_request() else None
        if request is not None:
            request.add_exception(coap_error.ConRetransmitsExceeded(seen))
        else:
            monitor()  # a confirmable response of ours: its own clean-up
        self._messages._continue_backlog(message.remote)
        try:
            self._on_silent(message.remote, seen)
        except Exception:
            self.log.exception("silent-device listener failed for %s", message.remote)
