"""The gateway's choice of content format per registration (hil.gateway.formats), without a network."""

from __future__ import annotations

import pytest

from hil.gateway.errors import GatewayRequestError
from hil.gateway.formats import FormatChooser, kind_of, negotiate
from hil.gateway.registry import Registration, RegistrationEvent
from hil.gateway.strict import StrictRegistration
from hil.gateway.rd import Rejected
from hil.lwm2m.codecs import OPAQUE, SENML_CBOR, SENML_JSON, TEXT, TLV
from hil.lwm2m.link import parse_links
from hil.lwm2m.model import Path


def registration(links: str, version: str = "1.1", rid: str = "r1") -> Registration:
    return Registration("ep", rid, ("127.0.0.1", 5683), 60, version, "U", parse_links(links), 0.0, 0.0)


def refusal(code: str, number: int) -> GatewayRequestError:
    return GatewayRequestError("ep", "/3/0", code, "", "read", number)


@pytest.mark.parametrize(
    "links, version, path, kind, first",
    [
        ('</>;rt="oma.lwm2m";ct=112,</3/0>', "1.1", Path(3, 0), "multi", SENML_CBOR),
        ('</>;rt="oma.lwm2m";ct="110 112",</3/0>', "1.1", Path(3, 0), "multi", SENML_CBOR),  # CBOR > JSON
        ('</>;rt="oma.lwm2m";ct=110,</3/0>', "1.1", Path(3, 0), "multi", SENML_JSON),
        ("</3/0>", "1.1", Path(3, 0), "multi", TLV),  # nothing announced: what servers in the field assume
        ("</3/0>", "1.0", Path(3, 0), "multi", TLV),
        ("</3/0>", "1.1", Path(3, 0, 17), "single", TEXT),
        ("</9>", "1.1", Path(9, 0, 2), "single", OPAQUE),  # an opaque resource
        ('</>;ct=110,</3/0>', "1.1", Path(3, 0, 17), "single", SENML_JSON),  # announced SenML carries the type
        ('</>;ct=11543,</3/0>', "1.0", Path(3, 0), "multi", TLV),  # LwM2M JSON: not spoken here
        ("</3/0>", "1.1", None, "composite", SENML_CBOR),
        ('</>;ct=110,</3/0>', "1.1", None, "composite", SENML_JSON),
    ],
)
def test_first_choice(links, version, path, kind, first):
    assert FormatChooser().candidates(registration(links, version), path, kind)[0] == first


def test_kind_of_paths():
    assert kind_of(Path(3, 0)) == kind_of(Path(3)) == kind_of(Path(3, 0, 11)) == "multi"  # 11 is a multiple resource
    assert kind_of(Path(3, 0, 17)) == kind_of(Path(3, 0, 11, 0)) == kind_of(Path(31024, 1, 2)) == "single"


async def test_negotiate_falls_back_once_and_remembers():
    chooser, reg = FormatChooser(), registration("</3/0>")
    asked: list[int] = []

    async def device(fmt: int) -> str:
        asked.append(fmt)
        if fmt != SENML_JSON:
            raise refusal("4.06 Not Acceptable", 134)
        return "content"

    assert await negotiate(chooser, reg, Path(3, 0), "multi", device) == "content"
    assert asked == [TLV, SENML_JSON]
    assert await negotiate(chooser, reg, Path(4, 0), "multi", device) == "content"
    assert asked == [TLV, SENML_JSON, SENML_JSON]  # remembered: straight to what worked


async def test_negotiate_gives_up_after_one_fallback_and_other_errors_pass_through():
    chooser, reg = FormatChooser(), registration("</3/0>")

    async def refuses_everything(fmt: int) -> None:
        raise refusal("4.15 Unsupported Content-Format", 143)

    with pytest.raises(GatewayRequestError, match="4.15"):
        await negotiate(chooser, reg, Path(3, 0), "multi", refuses_everything)
    assert chooser.candidates(reg, Path(3, 0), "multi")[0] == SENML_CBOR  # TLV and JSON refused so far

    async def not_found(fmt: int) -> None:
        raise refusal("4.04 Not Found", 132)

    with pytest.raises(GatewayRequestError, match="4.04"):
        await negotiate(chooser, reg, Path(3, 0), "multi", not_found)
    assert chooser.candidates(reg, Path(3, 0), "multi")[0] == SENML_CBOR  # a 4.04 teaches nothing about formats


def test_what_was_learnt_ends_with_the_registration():
    chooser, reg = FormatChooser(), registration("</3/0>")
    chooser.refused(reg, TLV, refusal("4.06 Not Acceptable", 134))
    assert chooser.candidates(reg, Path(3, 0), "multi")[0] == SENML_JSON
    chooser.on_registration(RegistrationEvent("deregistered", reg))
    assert chooser.candidates(reg, Path(3, 0), "multi")[0] == TLV


@pytest.mark.parametrize(
    "version, links, code",
    [
        ("1.1", '</>;rt="oma.lwm2m";ct=11542,</3/0>', "4.00"),  # the default format is not announced
        ("1.1", '</>;rt="oma.lwm2m";ct="110 0",</3/0>', "4.00"),
        ("1.0", '</>;rt="oma.lwm2m";ct=110,</3/0>', "4.00"),  # 1.0 knew only LwM2M JSON as optional
        ("1.2", "</3/0>", "4.12"),
    ],
)
def test_strict_registration_refuses(version, links, code):
    with pytest.raises(Rejected) as err:
        StrictRegistration().check(version, parse_links(links))
    assert str(err.value.code).startswith(code)


def test_strict_registration_accepts_optional_formats():
    for links in ('</>;rt="oma.lwm2m";ct=112,</3/0>', '</>;ct="110 112",</3/0>', "</3/0>"):
        StrictRegistration().check("1.1", parse_links(links))
    StrictRegistration().check("1.0", parse_links('</>;rt="oma.lwm2m";ct=11543'))
    with pytest.raises(ValueError, match="choose among"):
        StrictRegistration(versions=("2.0",))
