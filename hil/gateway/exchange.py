"""CoAP exchanges from the gateway to its devices: timing, abandoning, and who is to blame.

RFC 7252 sets the pace of a confirmable request with four transmission
parameters (:class:`TransmissionParameters`); the gateway derives every
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
import math
from dataclasses import dataclass
from typing import Any, Callable

from aiocoap import error as coap_error
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import CON

SilentListener = Callable[[Any, str], None]  # (aiocoap remote, what was seen)


@dataclass(frozen=True)
class TransmissionParameters:
    """RFC 7252 section 4.8: how a confirmable message is retransmitted.

    Defaults are the RFC's. ``ack_timeout`` is the first wait for an
    acknowledgement (seconds), each retransmission doubles it, after
    ``max_retransmit`` retransmissions the request has failed.
    """

    ack_timeout: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4

    def __post_init__(self) -> None:
        if not (isinstance(self.ack_timeout, (int, float)) and math.isfinite(self.ack_timeout) and self.ack_timeout > 0):
            raise ValueError(f"ack_timeout must be a positive number of seconds, got {self.ack_timeout!r}")
        if not (isinstance(self.ack_random_factor, (int, float)) and 1.0 <= self.ack_random_factor <= 10.0):
            raise ValueError(f"ack_random_factor must be between 1 and 10 (RFC 7252: at least 1), got {self.ack_random_factor!r}")
        if isinstance(self.max_retransmit, bool) or not isinstance(self.max_retransmit, int) or not 0 <= self.max_retransmit <= 10:
            raise ValueError(f"max_retransmit must be an integer 0..10, got {self.max_retransmit!r}")

    @property
    def transmissions(self) -> int:
        return self.max_retransmit + 1

    @property
    def max_transmit_span(self) -> float:
        """From the first transmission to the last retransmission, at most."""
        return self.ack_timeout * (2**self.max_retransmit - 1) * self.ack_random_factor

    @property
    def max_transmit_wait(self) -> float:
        """From the first transmission until the sender gives up waiting, at most."""
        return self.ack_timeout * (2 ** (self.max_retransmit + 1) - 1) * self.ack_random_factor

    @property
    def exchange_timeout(self) -> float:
        """How long a request waits for its answer by default: every retransmission plus the last wait."""
        return self.max_transmit_wait

    def tuning(self) -> TransportTuning:
        """aiocoap's per-message form of these parameters."""
        return _tuning_class(self)()

    def describe(self) -> str:
        return (f"ACK_TIMEOUT {self.ack_timeout:g} s, ACK_RANDOM_FACTOR {self.ack_random_factor:g}, "
                f"MAX_RETRANSMIT {self.max_retransmit}")

    @classmethod
    def parse(cls, text: str) -> "TransmissionParameters":
        """``"ack_timeout=0.5,max_retransmit=3"`` (any subset; the rest stay at the RFC defaults)."""
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, eq, value = item.partition("=")
            name = name.strip().lower().replace("-", "_")
            if not eq or name not in ("ack_timeout", "ack_random_factor", "max_retransmit"):
                raise ValueError(f"CoAP transmission parameter {item!r}: expected ack_timeout=S, ack_random_factor=F or max_retransmit=N")
            try:
                values[name] = int(value) if name == "max_retransmit" else float(value)
            except ValueError:
                raise ValueError(f"CoAP transmission parameter {item!r}: {value!r} is not a number") from None
        return cls(**values)


_tunings: dict[TransmissionParameters, type[TransportTuning]] = {}


def _tuning_class(params: TransmissionParameters) -> type[TransportTuning]:
    cls = _tunings.get(params)
    if cls is None:
        cls = type("GatewayTuning", (TransportTuning,), {
            "ACK_TIMEOUT": float(params.ack_timeout),
            "ACK_RANDOM_FACTOR": float(params.ack_random_factor),
            "MAX_RETRANSMIT": params.max_retransmit,
            "REQUEST_TIMEOUT": params.max_transmit_wait,
        })
        _tunings[params] = cls
    return cls


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
