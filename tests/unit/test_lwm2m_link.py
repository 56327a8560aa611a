"""CoRE Link Format (RFC 6690) for Register and Discover."""

from __future__ import annotations

import pytest

from hil.lwm2m.link import Link, announced_formats, available_instances, format_links, parse_links, registration_links
from hil.lwm2m.model import CodecError


def test_registration_payload():
    text = registration_links({3303: [0], 1: [0], 9: [], 3: [0]})
    assert text == '</>;rt="oma.lwm2m",</1/0>,</3/0>,</9>,</3303/0>'  # nothing beyond the default: no ct


def test_registration_payload_announces_one_format_on_the_root():
    text = registration_links({3: [0]}, content_format=112)
    assert text == '</>;rt="oma.lwm2m";ct=112,</3/0>'
    assert announced_formats(parse_links(text)) == (112,)


def test_announced_formats_in_both_forms_of_rfc7252():
    assert announced_formats(parse_links('</>;ct="110 112",</3/0>')) == (110, 112)
    assert announced_formats(parse_links('</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/3/0>')) == (11543,)
    assert announced_formats(parse_links('</3/0>,</1/0>')) == ()
    assert announced_formats(parse_links('</>;rt="oma.lwm2m";ct="x 110"')) == (110,)


def test_registration_payload_with_versions_and_several_instances():
    text = registration_links({9: [1001, 1000], 1: [0]}, versions={1: "1.1", 9: "1.0"})
    assert text == '</>;rt="oma.lwm2m",</1>;ver=1.1,</1/0>,</9>;ver=1.0,</9/1000>,</9/1001>'


def test_registration_payload_round_trips_to_available_instances():
    objects = {1: [0], 3: [0], 9: [], 3303: [0, 1], 35003: [4, 2]}
    assert available_instances(registration_links(objects, {1: "1.1"})) == {
        1: [0], 3: [0], 9: [], 3303: [0, 1], 35003: [2, 4],
    }


def test_parse_quoted_unquoted_and_valueless_attributes():
    links = parse_links('</>;rt="oma.lwm2m";ct=11543,</3/0>;pmin=10;obs,</3/0/11>;dim=2')
    assert links == [
        Link("/", {"rt": "oma.lwm2m", "ct": "11543"}),
        Link("/3/0", {"pmin": "10", "obs": None}),
        Link("/3/0/11", {"dim": "2"}),
    ]


def test_parse_commas_semicolons_and_escapes_inside_quotes():
    links = parse_links(b'</a>;title="x, y; \\"z\\"";ct="0 40",</b>')
    assert links == [Link("/a", {"title": 'x, y; "z"', "ct": "0 40"}), Link("/b")]


def test_parse_tolerates_whitespace_and_newlines():
    links = parse_links(' </1/0> ,\n</3/0> ; ver = 1.1 \n')
    assert links == [Link("/1/0"), Link("/3/0", {"ver": "1.1"})]


def test_parse_empty_payload():
    assert parse_links(b"") == [] and parse_links("  ") == []


def test_format_round_trips_through_parse():
    links = [
        Link("/", {"rt": "oma.lwm2m", "ct": "11543"}),
        Link("/3/0", {"pmin": "10", "pmax": "60", "gt": "-2.5", "obs": None}),
        Link("/x", {"title": 'say "hi", ok\\'}),
    ]
    text = format_links(links)
    assert text == (
        '</>;rt="oma.lwm2m";ct=11543,</3/0>;pmin=10;pmax=60;gt=-2.5;obs,'
        '</x>;title="say \\"hi\\", ok\\\\"'
    )
    assert parse_links(text) == links
    assert str(links[1]) == "</3/0>;pmin=10;pmax=60;gt=-2.5;obs"


def test_format_refuses_bad_names():
    with pytest.raises(CodecError, match="bad link attribute name 'a b'"):
        format_links([Link("/3", {"a b": "1"})])


def test_available_instances_skips_the_root_link():
    assert available_instances('</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>,</9>') == {1: [0], 3: [0], 9: []}


def test_available_instances_without_root_link():
    assert available_instances("</1/0>,</3/0>,</3303/1>,</3303/0>") == {1: [0], 3: [0], 3303: [0, 1]}


def test_available_instances_with_alternate_root():
    text = '</lwm2m>;rt="oma.lwm2m";ct=11543,</lwm2m/1>;ver=1.1,</lwm2m/1/0>,</lwm2m/3/0>,</lwm2m/9>'
    assert available_instances(text) == {1: [0], 3: [0], 9: []}


def test_available_instances_takes_parsed_links():
    assert available_instances([Link("/3/0"), Link("/9/1000")]) == {3: [0], 9: [1000]}


def test_available_instances_refuses_links_outside_alternate_root():
    with pytest.raises(CodecError, match="link </3/0> is outside the LwM2M root /lwm2m"):
        available_instances('</lwm2m>;rt="oma.lwm2m",</3/0>')


def test_available_instances_refuses_non_numeric_paths():
    with pytest.raises(CodecError, match="link </3/a>: expected /obj"):
        available_instances("</3/a>")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"</3/0>,", "at offset 7: expected '<' starting a link"),
        (b"/3/0", "at offset 0: expected '<' starting a link"),
        (b"</3/0", "at offset 0: link target '<' has no closing '>'"),
        (b"</3/0>;", "at offset 7: expected an attribute name"),
        (b'</3/0>;rt="x', "at offset 10: quoted attribute value has no closing"),
        (b"</3/0> x", "at offset 7: expected ';', ',' or end after link </3/0>"),
        (b"</\xc3\xa9>;=1", "at offset 6: expected an attribute name"),
        (b"</\xff>", "at offset 2: link format is not valid UTF-8"),
    ],
)
def test_malformed_links_name_the_offset(payload, message):
    with pytest.raises(CodecError) as err:
        parse_links(payload)
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.offset == int(message.split()[2].rstrip(":"))
