"""CoAP's transmission parameters (RFC 7252 section 4.8), shared by the gateway and the simulated node.

They set the pace of a confirmable message: the first wait for an
acknowledgement, how much of it is randomised, how many retransmissions
follow (each doubling the wait). Every per-exchange timeout is derived from
them. The RFC's values suit a radio; loopback tests use far smaller ones
(``TransmissionParameters(ack_timeout=0.05)``), slow links larger ones.
On the command line they read ``ack_timeout=0.5,max_retransmit=3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiocoap.numbers.constants import TransportTuning


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
        cls = type("CoapTuning", (TransportTuning,), {
            "ACK_TIMEOUT": float(params.ack_timeout),
            "ACK_RANDOM_FACTOR": float(params.ack_random_factor),
            "MAX_RETRANSMIT": params.max_retransmit,
            "REQUEST_TIMEOUT": params.max_transmit_wait,
        })
        _tunings[params] = cls
    return cls
