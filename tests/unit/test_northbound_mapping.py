"""Pure mappings behind the northbound APIs: SDF names and values, request topics, Leshan JSON nodes."""

from __future__ import annotations

import pytest

from hil.fita import sdf
from hil.fita.northbound import RequestError, parse_request, parse_topic
from hil.gateway import leshan
from hil.lwm2m.model import ObjLnk, Path

# --------------------------------------------------------------------------- SDF names


def test_object_and_property_names_follow_nextgengw():
    assert sdf.object_name(9) == "LWM2M_Software_Management"
    assert sdf.object_id("Software_Package_Monitoring") == 35003
    assert sdf.object_id("3303") == 3303
    assert sdf.resource_name(3, 21) == "Memory_Total"
    assert sdf.resource_name(4, 4) == "IP_Addresses"
    assert sdf.resource_name(35003, 27400) == "Sofware_Package"  # sic, as the kubelet reads it
    assert sdf.resource_id(35003, "Sofware_Package") == 27400
    assert sdf.resource_id(9, "Package") == 2 and sdf.resource_id(9, "Activate") == 10


def test_unknown_names_say_what_exists():
    with pytest.raises(sdf.SdfError, match="unknown SDF object 'Thermostat'.*Device") as err:
        sdf.object_id("Thermostat")
    assert err.value.code == 132
    with pytest.raises(sdf.SdfError, match="Device has no property or action 'Colour'.*Memory_Total"):
        sdf.resource_id(3, "Colour")


def test_values_render_as_strings():
    assert sdf.value_text(256) == "256"
    assert sdf.value_text(True) == "true"
    assert sdf.value_text(21.5) == "21.5"
    assert sdf.value_text(ObjLnk(3, 0)) == "Device/0"
    assert sdf.value_text(ObjLnk(9, 1000)) == "LWM2M Software Management/1000"
    assert sdf.value_text(b"\x01\xff") == "01ff"


def test_render_groups_instances_and_multiple_resources():
    content = {
        Path(4, 0, 0): 41,
        Path(4, 0, 4, 0): "10.0.0.1",
        Path(4, 0, 5, 0): "10.0.0.254",
        Path(4, 0, 5, 1): "10.0.1.254",
    }
    assert sdf.render(content, 4) == {
        "Connectivity_Monitoring": [
            {"label": "0", "sdfProperty": {"Network_Bearer": "41", "IP_Addresses": "10.0.0.1", "Router_IP_Addresses": ["10.0.0.254", "10.0.1.254"]}}
        ]
    }
    assert sdf.render({}, 9, [0, 1]) == {"LWM2M_Software_Management": [{"label": "0"}, {"label": "1"}]}


@pytest.mark.parametrize(
    "path, given, expected",
    [
        (Path(9, 0, 2), {"name": "t", "version": 1}, b'{"name":"t","version":1}'),
        (Path(9, 0, 2), '{"name": "t"}', b'{"name": "t"}'),
        (Path(1, 0, 1), "60", 60),
        (Path(1, 0, 1), 60.0, 60),
        (Path(9, 0, 12), "false", False),
        (Path(3303, 0, 5700), "21.5", 21.5),
        (Path(35003, 0, 27400), "LWM2M Software Management/7", ObjLnk(9, 7)),
        (Path(35003, 0, 27400), "9:7", ObjLnk(9, 7)),
        (Path(35001, 0, 0), 12, "12"),
    ],
)
def test_values_parse_by_resource_type(path, given, expected):
    assert sdf.parse_value(path, given) == expected


@pytest.mark.parametrize("path, given", [(Path(1, 0, 1), "soon"), (Path(1, 0, 1), 1.5), (Path(9, 0, 12), "maybe"), (Path(1, 0, 1), True)])
def test_bad_values_name_the_property(path, given):
    with pytest.raises(sdf.SdfError, match=r"is not a valid"):
        sdf.parse_value(path, given)


# --------------------------------------------------------------------------- request topics and payloads


def test_topics_map_to_targets():
    assert parse_topic("n1/LWM2M_Software_Management").path == Path(9)
    assert parse_topic("n1/LWM2M_Software_Management/0").path == Path(9, 0)
    target = parse_topic("n1/LWM2M_Software_Management/0/Action/Install")
    assert (target.endpoint, target.kind, target.path) == ("n1", "Action", Path(9, 0, 4))
    assert parse_topic("n1/Temperature/2/Property/Sensor_Value").path == Path(3303, 2, 5700)


@pytest.mark.parametrize(
    "topic, code",
    [("n1/Device/0/Property", 128), ("n1//0", 128), ("n1/Nope", 132), ("n1/Device/0/Property/Nope", 132), ("n1/Device/zero", 128)],
)
def test_bad_topics(topic, code):
    with pytest.raises(RequestError) as err:
        parse_topic(topic)
    assert err.value.code == code


def test_request_payloads_accept_data_as_object_or_json_string():
    assert parse_request(b'{"operation": "POST", "data": {"label": "0"}}') == ("POST", {"label": "0"})
    assert parse_request(b'{"operation": "POST", "data": "{\\"label\\": \\"1000\\"}"}') == ("POST", {"label": "1000"})
    assert parse_request(b'{"operation": "post", "data": "plain text"}') == ("POST", "plain text")
    assert parse_request(b'{"operation": "GET"}') == ("GET", None)


# --------------------------------------------------------------------------- Leshan JSON


def test_leshan_nodes_for_reads():
    content = {Path(3, 0, 17): "embServe Node", Path(3, 0, 11, 0): 0, Path(3, 0, 13): 1700000000}
    assert leshan.node_json(content, Path(3, 0, 17)) == {"kind": "singleResource", "id": 17, "type": "STRING", "value": "embServe Node"}
    node = leshan.node_json(content, Path(3, 0))
    assert node["kind"] == "instance" and node["id"] == 0
    by_id = {r["id"]: r for r in node["resources"]}
    assert by_id[11] == {"kind": "multiResource", "id": 11, "type": "INTEGER", "values": {"0": 0}}
    assert by_id[13]["value"] == 1700000000 * 1000  # time in milliseconds, as Leshan
    link = leshan.node_json({Path(35003, 1, 27400): ObjLnk(9, 1000)}, Path(35003, 1, 27400))
    assert link["value"] == {"objectId": 9, "objectInstanceId": 1000}


def test_leshan_bodies_for_writes_and_creates():
    body = {"id": 2, "kind": "singleResource", "value": b"{}".hex(), "type": "opaque"}
    assert leshan.content_from_json(body, Path(9, 1000, 2)) == {Path(9, 1000, 2): b"{}"}
    create = {"id": 1000, "kind": "instance", "resources": []}
    assert leshan.content_from_json(create, Path(9)) == {}
    multi = {"id": 4, "kind": "multiResource", "values": {"0": "a", "1": "b"}}
    assert leshan.content_from_json(multi, Path(4, 0, 4)) == {Path(4, 0, 4, 0): "a", Path(4, 0, 4, 1): "b"}
    with pytest.raises(leshan.NodeError, match="does not match the path"):
        leshan.content_from_json({"id": 3, "kind": "singleResource", "value": "x"}, Path(9, 0, 2))
    with pytest.raises(leshan.NodeError, match="unknown resource type 'BLOB'"):
        leshan.content_from_json({"id": 2, "kind": "singleResource", "value": "x", "type": "BLOB"}, Path(9, 0, 2))


def test_leshan_envelope():
    assert leshan.envelope(69, {"x": 1}) == {"status": "CONTENT", "valid": True, "success": True, "failure": False, "content": {"x": 1}}
    failed = leshan.envelope(132, error="gone")
    assert failed["status"] == "NOT_FOUND" and failed["success"] is False and failed["errormessage"] == "gone"
