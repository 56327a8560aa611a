"""A strict registration policy: the gateway as the strictest servers in the field check Register.

LwM2M 1.1 Core 6.2.1: a server MUST refuse a Register whose LwM2M version it
does not support (4.12 Precondition Failed, Transport table 6.7-2), and a
client MAY name in ``ct`` on its root link the *optional* data formats it
supports. Servers such as Wakaama take exactly those (SenML JSON 110, SenML
CBOR 112, LwM2M JSON 11543; in 1.0 only 11543) and answer 4.00 Bad Request to
anything else there, TLV (the default) included. The default gateway is
lenient and takes every ``ct``; ``Gateway(registration_policy=StrictRegistration())``
behaves like those servers, so devices are tested against them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiocoap.numbers.codes import Code

from ..lwm2m.codecs import LWM2M_JSON, SENML_CBOR, SENML_JSON
from ..lwm2m.link import LWM2M_ROOT_RT, Link
from .rd import Rejected

OPTIONAL_FORMATS = {"1.0": (LWM2M_JSON,), "1.1": (SENML_JSON, SENML_CBOR, LWM2M_JSON)}


@dataclass(frozen=True)
class StrictRegistration:
    versions: tuple[str, ...] = ("1.0", "1.1")

    def __post_init__(self) -> None:
        unknown = [v for v in self.versions if v not in OPTIONAL_FORMATS]
        if unknown or not self.versions:
            raise ValueError(f"strict registration versions {list(self.versions)}: choose among {', '.join(OPTIONAL_FORMATS)}")

    def check(self, version: str, links: list[Link]) -> None:
        """Raise :class:`Rejected` for what a strict server refuses."""
        if version not in self.versions:
            raise Rejected(
                Code.PRECONDITION_FAILED,
                f"lwm2m={version}: this server supports LwM2M {' and '.join(self.versions)}",
            )
        allowed = OPTIONAL_FORMATS[version]
        for link in links:
            if link.path.rstrip("/") != "" and LWM2M_ROOT_RT not in (link.attrs.get("rt") or "").split():
                continue
            ct = link.attrs.get("ct")
            if ct is None:
                continue
            values = ct.split()
            if not values or any(not v.isdigit() or int(v) not in allowed for v in values):
                raise Rejected(
                    Code.BAD_REQUEST,
                    f"ct={ct} on the root link: LwM2M {version} names there only the optional formats it supports "
                    f"({', '.join(map(str, allowed))}); the default formats are not announced",
                )
