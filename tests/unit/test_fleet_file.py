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
    specs = load_fleet(IOTNETEMU_EXAMPLE, simulate=True)
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
        ({"nodes": {"a": {"type": "linux"}}}, "nodes.a.type: 'linux' is not a node type here"),
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


# --------------------------------------------------------------------------- IoTNetEMU's nodes, images and networks


def elf_header(machine: int, elf_class: int = 1) -> bytes:
    """The first bytes of an ELF file: enough for the image check, which reads only the header."""
    return b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little")


@pytest.fixture
def layout(tmp_path):
    """An IoTNetEMU-style directory: images/embserve.elf (an ARM ELF header) and other files."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "embserve.elf").write_bytes(elf_header(40))
    (tmp_path / "images" / "x86.elf").write_bytes(elf_header(62, elf_class=2))
    (tmp_path / "images" / "notes.txt").write_text("not firmware\n")
    return tmp_path


def two_nodes(**overrides) -> dict:
    """FITA's two-node example as a document, with changes."""
    node = lambda n: {  # noqa: E731
        "type": "zephyr", "image": "images/embserve.elf",
        "bootstrap": [f"embserve connector lwm2m server_add coap://10.10.12.254:5683 node{n}"],
        "networks": {"linux-br": {"ipv4_address": f"10.10.12.{n}", "ipv4_gateway": "10.10.12.254"}},
    }
    doc = {"nodes": {"node1": node(1), "node2": node(2)},
           "networks": {"linux-br": {"type": "linux-br", "host_address": "10.10.12.254"}}}
    for path, value in overrides.items():
        *parents, last = path.split(".")
        where = doc
        for key in parents:
            where = where[key]
        where[last] = value
    return doc


def test_zephyr_nodes_get_their_image_board_backend_and_place_on_the_network(layout):
    plan = parse_fleet(two_nodes(), "fleet.yaml", base=layout)
    node1, node2 = plan
    assert (node1.type, node1.kind, node1.board, node1.image) == ("zephyr", "qemu", "mps2_an385", layout / "images" / "embserve.elf")
    assert str(node1.networks[0].interface) == "10.10.12.1/24" and str(node2.networks[0].address) == "10.10.12.2"
    assert str(node1.networks[0].gateway) == "10.10.12.254"
    net = plan.networks["linux-br"]
    assert (net.bridge, str(net.host)) == ("lnxbr-0", "10.10.12.254/24")
    renode = parse_fleet(two_nodes(), "fleet.yaml", base=layout, backend="renode")
    assert [s.kind for s in renode] == ["renode", "renode"]
    simulated = parse_fleet(two_nodes(), "fleet.yaml", base=layout / "elsewhere", simulate=True)
    assert [(s.kind, s.networks) for s in simulated] == [("sim", []), ("sim", [])]


def test_ranged_addresses_automatic_addresses_and_native_applications(layout):
    doc = {
        "nodes": {
            "q{1..3}": {"image": "images/embserve.elf", "networks": {"lan": {"ipv4_address": "10.0.0.{11..13}"}}},
            "auto{1..2}": {"type": "sim", "networks": {"lan": {}}},
        },
        "networks": {"lan": {"type": "linux-br", "host_address": "10.0.0.1/16"}},
        "applications": {"proxy": {"type": "native", "image": "socat UDP4-LISTEN:5683,fork UDP4:10.0.0.1:5684"}},
    }
    plan = parse_fleet(doc, "fleet.yaml", base=layout)
    assert [str(s.networks[0].address) for s in plan] == ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.2", "10.0.0.3"]
    assert str(plan[0].networks[0].interface) == "10.0.0.11/16"
    assert plan[0].type == "zephyr" and plan[3].kind == "sim"  # no type: zephyr with an image, sim without
    assert [(a.name, a.command) for a in plan.applications] == [("proxy", "socat UDP4-LISTEN:5683,fork UDP4:10.0.0.1:5684")]


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"nodes.node1.image": "images/missing.elf"}, "nodes.node1.image: 'images/missing.elf' ("),
        ({"nodes.node1.image": "images/notes.txt"}, "nodes.node1.image: 'images/notes.txt'"),
        ({"nodes.node2.image": "images/x86.elf"}, "nodes.node2.image: 'images/x86.elf'"),
        ({"nodes.node2.networks.linux-br.ipv4_address": "10.10.12.1"}, "nodes.node2.networks.linux-br.ipv4_address: 10.10.12.1 is node node1's address too"),
        ({"nodes.node2.networks.linux-br.ipv4_address": "10.10.13.2"}, "nodes.node2.networks.linux-br.ipv4_address: 10.10.13.2 is outside network linux-br (10.10.12.0/24)"),
        ({"nodes.node1.networks.linux-br.ipv4_address": "10.10.12.254"}, "nodes.node1.networks.linux-br.ipv4_address: 10.10.12.254 is the host's address"),
        ({"nodes.node1.networks.linux-br.ipv4_gateway": "10.10.99.1"}, "nodes.node1.networks.linux-br.ipv4_gateway: 10.10.99.1 is outside network linux-br"),
        ({"nodes.node1.networks.linux-br.ipv4_address": "ten.ten"}, "nodes.node1.networks.linux-br.ipv4_address: 'ten.ten' is not an IPv4 address"),
        ({"nodes.node2.networks": {"wifi": {"ipv4_address": "10.10.12.2"}}}, "nodes.node2.networks.wifi: no network 'wifi'"),
        ({"nodes.node2.networks": {}}, "nodes.node2.networks: the gateway meets the nodes on their networks"),
        ({"nodes.node1.type": "contiki"}, "nodes.node1.type: 'contiki' is not a node type here"),
        ({"nodes.node1.board": "no_such_board"}, "nodes.node1.board: unknown board 'no_such_board'"),
        ({"nodes.node1.board": "nrf52840dk", "nodes.node1.backend": "qemu"}, "nodes.node1.board: board nrf52840dk does not run on qemu"),
        ({"networks.linux-br.type": "ovs-br"}, "networks.linux-br.type: 'ovs-br' is not a network type here"),
        ({"networks.linux-br": {"type": "linux-br"}}, "networks.linux-br.host_address: missing, and node node1 is on this network"),
        ({"networks.linux-br.host_address": "10.10.12.0/24"}, "networks.linux-br.host_address: 10.10.12.0/24 is the network's own"),
        ({"applications": {"proxy": {"type": "docker", "image": "x"}}}, "applications.proxy.type: 'docker' is not an application type"),
        ({"applications": {"proxy": {"type": "native"}}}, "applications.proxy.image: expected the command line"),
    ],
)
def test_bad_iotnetemu_input_is_one_line_naming_the_node_and_the_field(layout, overrides, fragment):
    with pytest.raises(FleetError) as err:
        parse_fleet(two_nodes(**overrides), "fleet.yaml", base=layout)
    message = str(err.value)
    assert message.startswith("fleet.yaml: ") and "\n" not in message
    assert fragment in message, message


def test_an_image_is_checked_as_an_arm_elf(layout):
    from hil.fleet_file import elf_problem

    assert elf_problem(layout / "images" / "embserve.elf") is None
    assert elf_problem(layout / "images" / "x86.elf") == "is a 64-bit ELF file, not a 32-bit ARM one"
    (layout / "mips.elf").write_bytes(elf_header(8))
    assert elf_problem(layout / "mips.elf") == "is an ELF file for another machine (e_machine 8), not ARM (40)"
    assert elf_problem(layout / "images") == "is a directory, not an ELF file"
    assert elf_problem(layout / "images" / "notes.txt") == "is not an ELF file"
    assert elf_problem(layout / "nothing.elf") == "does not exist"


def test_a_ranged_address_must_give_one_address_per_node(layout):
    doc = {"nodes": {"n{1..3}": {"image": "images/embserve.elf", "networks": {"lan": {"ipv4_address": "10.0.0.{1..2}"}}}},
           "networks": {"lan": {"type": "linux-br", "host_address": "10.0.0.254"}}}
    with pytest.raises(FleetError, match=r"nodes.n\{1..3\} \(n1\).networks.lan.ipv4_address: '10.0.0.\{1..2\}' gives 2 addresses for 3 nodes"):
        parse_fleet(doc, "fleet.yaml", base=layout)
