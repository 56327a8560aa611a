"""Which content format the gateway asks each device for, and what it learns from refusals.

Per registration the gateway knows the LwM2M version the client registered
with and the formats it named with ``ct`` on its root link (LwM2M 1.1 Core
6.2.1). From them it orders the formats to try (:meth:`FormatChooser.candidates`):

* a payload of several values (object, instance, multiple resource, create):
  the announced ones, SenML CBOR > SenML JSON > TLV; then those the client
  may still support: TLV (mandatory in 1.0, and what servers in the field
  assume when nothing is announced), and for 1.1 and later SenML JSON and
  SenML CBOR (1.1 Core 7.4: a client SHOULD support one of them; JSON is
  the one client libraries enable by default);
* one value (a single resource or a resource instance): an announced SenML
  format (it carries the value's type), else plain text, or octet-stream for
  an opaque resource (both mandatory in 1.1); then the structured ones;
* composite operations and Send: SenML only (announced first, CBOR > JSON).

A 4.06 Not Acceptable or 4.15 Unsupported Content-Format answer makes the
request go out once more in the next format (:func:`negotiate`); the refused
format is then skipped for that registration, and the one that worked is
tried first from then on. A format the caller names is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from ..lwm2m.codecs import OPAQUE, SENML_CBOR, SENML_FORMATS, SENML_JSON, TEXT, TLV
from ..lwm2m.link import announced_formats
from ..lwm2m.model import Path, ResourceType, resource_def
from .errors import GatewayError, GatewayRequestError
from .registry import Registration, RegistrationEvent

Kind = Literal["single", "multi", "composite"]
T = TypeVar("T")

NOT_ACCEPTABLE = 134  # 4.06
UNSUPPORTED_CONTENT_FORMAT = 143  # 4.15
STRUCTURED = (SENML_CBOR, SENML_JSON, TLV)  # best first
UNANNOUNCED_1_1 = (SENML_JSON, SENML_CBOR)  # tried after TLV when a 1.1 client names nothing


def kind_of(path: Path) -> Kind:
    """"single" for one value (a single resource, a resource instance), "multi" otherwise."""
    if path.res is None:
        return "multi"
    if path.ri is not None:
        return "single"
    rd = resource_def(path)
    return "multi" if rd is not None and rd.multiple else "single"


class FormatChooser:
    """The gateway's format choice per registration; forgets a registration when it ends."""

    def __init__(self, log: logging.Logger | None = None):
        self.log = log or logging.getLogger("hil.gateway")
        self._announced: dict[str, tuple[int, ...]] = {}
        self._refused: dict[str, set[int]] = {}
        self._worked: dict[tuple[str, Kind], int] = {}

    def on_registration(self, event: RegistrationEvent) -> None:
        rid = event.registration.registration_id
        if event.kind in ("deregistered", "expired"):
            self._announced.pop(rid, None)
            self._refused.pop(rid, None)
            for key in [k for k in self._worked if k[0] == rid]:
                del self._worked[key]
        elif event.kind == "updated":
            self._announced.pop(rid, None)  # the links may have changed

    def announced(self, reg: Registration) -> tuple[int, ...]:
        rid = reg.registration_id
        if rid not in self._announced:
            self._announced[rid] = announced_formats(reg.object_links)
        return self._announced[rid]

    def candidates(self, reg: Registration, path: Path | None, kind: Kind) -> list[int]:
        """Formats to try for a request on ``path`` of ``kind``, best first; never empty."""
        announced = self.announced(reg)
        modern = reg.lwm2m_version != "1.0"
        if kind == "composite":
            order = [f for f in SENML_FORMATS if f in announced] + list(SENML_FORMATS)
        elif kind == "single":
            single = OPAQUE if path is not None and _opaque(path) else TEXT
            order = [f for f in SENML_FORMATS if f in announced] + [single]
            order += [f for f in STRUCTURED if f in announced] + [TLV] + (list(UNANNOUNCED_1_1) if modern else [])
        else:
            order = [f for f in STRUCTURED if f in announced] + [TLV] + (list(UNANNOUNCED_1_1) if modern else [])
        refused = self._refused.get(reg.registration_id, set())
        worked = self._worked.get((reg.registration_id, kind))
        if worked is not None:
            order.insert(0, worked)
        out = list(dict.fromkeys(f for f in order if f not in refused))
        return out or list(dict.fromkeys(order))  # everything refused once: start over rather than give up

    def refused(self, reg: Registration, fmt: int, exc: GatewayRequestError) -> None:
        self._refused.setdefault(reg.registration_id, set()).add(fmt)
        self._worked = {k: v for k, v in self._worked.items() if not (k[0] == reg.registration_id and v == fmt)}
        self.log.info("%s refused content format %d (%s): not asked for again", reg.endpoint, fmt, exc.code)

    def worked(self, reg: Registration, kind: Kind, fmt: int) -> None:
        self._worked[(reg.registration_id, kind)] = fmt


def _opaque(path: Path) -> bool:
    rd = resource_def(path)
    return rd is not None and rd.type is ResourceType.OPAQUE


def _is_format_refusal(exc: GatewayError) -> bool:
    return isinstance(exc, GatewayRequestError) and exc.code_number in (NOT_ACCEPTABLE, UNSUPPORTED_CONTENT_FORMAT)


async def negotiate(
    chooser: FormatChooser,
    reg: Registration,
    path: Path | None,
    kind: Kind,
    attempt: Callable[[int], Awaitable[T]],
) -> T:
    """``attempt(format)`` in the best format for ``reg``; once more in the next after a 4.06/4.15."""
    choices = chooser.candidates(reg, path, kind)
    for n, fmt in enumerate(choices[:2]):
        try:
            result = await attempt(fmt)
        except GatewayRequestError as exc:
            if not _is_format_refusal(exc):
                raise
            chooser.refused(reg, fmt, exc)
            if n == 1 or len(choices) < 2:
                raise
            continue
        chooser.worked(reg, kind, fmt)
        return result
    raise AssertionError("unreachable: the loop returns or raises")
