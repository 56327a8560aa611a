"""Fleet files: IoTNetEMU's config.yaml shape, brace ranges, bootstrap address rewriting."""

from __future__ import annotations

import pytest
from conftest import SHARED

from hil.fleet import (
    FleetError,
    expand_braces,
    load_fleet,
    parse_fleet,
    rewrite_bootstrap,
)

IOTNETEMU_EXAMPLE = SHARED / "fita" / "examples" / "iotnetemu-two-nodes.yaml"


def test_brace_ranges():
    assert expand_braces("node") == ["node"]
    assert expand_braces("node{1..3}") == ["node1", "node2", "node3"]
    assert expand_braces("n{08..10}") == ["n08", "n09", "n10"]
    assert expand_braces("r{1..2}-n{1..2}") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]
    assert len(expand_braces("node{1..500}")) == 500
    with pytest.raises(FleetError, match="runs backwards"):
        expand_braces("node{5..1}")


def test_the_iotnetemu_example_loads_as_it_is():
    if not IOTNETEMU_EXAMPLE.is_file():
        pytest.skip(f"FITA's IoTNetEMU example is not at {IOTNETEMU_EXAMPLE}")
    specs = load_fleet(IOTNETEMU_EXAMPLE)
    assert [s.name for s in specs] == ["node1", "node2"]
    assert specs[0].bootstrap == ["embserve connector lwm2m server_add coap://10.10.12.254:5683 node1"]
    assert specs[0].sensors == {"temperature": 21.5}


def test_ranged_entries_give_each_node_its_name_and_settings():
    doc = {
        "nodes": {
            "node{1..3}": {
                "bootstrap": ["embserve connector lwm2m server_add coap://10.0.0.1:5683 node{1..3}"],
                "sensors": {"temperature": "wave:base=21,amplitude=1,period=30", "humidity": 40},
                "lifetime": 60,
            },
            "solo": {"bootstrap": ["embserve connector lwm2m server_add coap://10.0.0.1:5683 {name}"], "sensors": ["light=300"]},
        }
    }
    specs = parse_fleet(doc)
    assert [s.name for s in specs] == ["node1", "node2", "node3", "solo"]
    assert specs[1].bootstrap == ["embserve connector lwm2m server_add coap://10.0.0.1:5683 node2"]
    assert specs[2].lifetime == 60 and specs[2].sensors["humidity"] == 40
    assert specs[3].bootstrap[0].endswith(" solo") and specs[3].sensors == {"light": "300"}


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({}, "non-empty 'nodes:'"),
        ({"nodes": {"a": {"type": "linux"}}}, "only 'zephyr'"),
        ({"nodes": {"a": {"bootstrap": "one command"}}}, "list of shell command"),
        ({"nodes": {"a": {"lifetime": 0}}}, "positive whole number"),
        ({"nodes": {"a": {"sensors": 5}}}, "sensors"),
        ({"nodes": {"n{1..2}": {}, "n2": {}}}, "also defined by nodes.n{1..2}"),
    ],
)
def test_bad_fleet_files_name_the_entry(doc, fragment):
    with pytest.raises(FleetError, match="fleet.yaml") as err:
        parse_fleet(doc, "fleet.yaml")
    assert fragment in str(err.value)


def test_bootstrap_addresses_are_rewritten_to_the_gateway():
    commands, replaced = rewrite_bootstrap(
        ["embserve connector lwm2m server_add coap://10.10.12.254:5683 node1", "kernel uptime"], "coap://127.0.0.1:40000"
    )
    assert commands == ["embserve connector lwm2m server_add coap://127.0.0.1:40000 node1", "kernel uptime"]
    assert replaced == {"coap://10.10.12.254:5683"}
    assert rewrite_bootstrap(["x coap://127.0.0.1:40000 y"], "coap://127.0.0.1:40000")[1] == set()
