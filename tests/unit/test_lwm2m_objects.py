"""The LwM2M object definitions: generated from the OMA registry, shipped as data, used by the model."""

from __future__ import annotations

import json
import runpy
from pathlib import Path as FsPath

import pytest

from hil import resources
from hil.lwm2m.model import DEFINITIONS, DEFINITIONS_SOURCE, LwM2MError, ResourceType, load_definitions

REPO = FsPath(__file__).resolve().parents[2]
GENERATOR = REPO / "scripts" / "lwm2m_objects" / "generate.py"


def test_the_data_names_its_source_and_every_objects_version():
    data = json.loads(resources.lwm2m_objects().read_text())
    assert data["source"]["registry"] == "OpenMobileAlliance/lwm2m-registry" and len(data["source"]["commit"]) == 40
    assert DEFINITIONS_SOURCE == data["source"]
    by_id = {o["id"]: o for o in data["objects"]}
    for oid in (0, 1, 2, 3, 4, 5, 9, 15, 3300, 3303, 3304, 35001, 35003):
        assert oid in by_id and by_id[oid]["version"] and by_id[oid]["source"], oid
    assert by_id[3]["version"] == "1.1" and by_id[3]["source"] == "version_history/3-1_1.xml"


def test_model_follows_the_oma_definitions():
    device = DEFINITIONS[3]
    assert device.name == "Device" and not device.multiple
    assert device.resources[6].type is ResourceType.INTEGER and device.resources[6].multiple  # Available Power Sources
    assert device.resources[4].executable and device.resources[4].mandatory
    assert device.resources[21].type is ResourceType.INTEGER
    sensor = DEFINITIONS[3300]
    assert [rd.id for rd in sensor.mandatory_resources] == [5700] and sensor.resources[5700].type is ResourceType.FLOAT
    assert DEFINITIONS[1].resources[11].type is ResourceType.INTEGER  # OMA's Unsigned Integer
    assert DEFINITIONS[35003].resources[27400].type is ResourceType.OBJLNK  # embServe's own, from the protocol


def test_malformed_definition_data_is_named():
    with pytest.raises(LwM2MError, match="x.json: /7/1 has unknown type 'Quaternion'"):
        load_definitions({"objects": [{"id": 7, "name": "n", "multiple": False, "version": "1.0", "mandatory": False,
                                       "resources": [{"id": 1, "name": "r", "type": "Quaternion"}]}]}, "x.json")
    with pytest.raises(LwM2MError, match="x.json: malformed object definition data"):
        load_definitions({"objects": [{"id": 7}]}, "x.json")


def test_generator_reads_registry_xml(tmp_path):
    generate = runpy.run_path(str(GENERATOR))
    facts = generate["read_object"](REPO / "scripts" / "lwm2m_objects" / "35001.xml")
    assert facts["id"] == 35001 and facts["name"] == "Data Route"
    assert facts["resources"][0] == {"id": 0, "name": "Origin_URI", "operations": "RW", "multiple": False,
                                     "mandatory": True, "type": "String", "units": ""}
    bad = tmp_path / "bad.xml"
    bad.write_text("<LWM2M><Object>")
    with pytest.raises(generate["DefinitionError"], match="bad.xml: not well-formed XML"):
        generate["read_object"](bad)
    assert generate["main"](["--registry", str(tmp_path / "absent"), "--commit", "0" * 40, "--out", str(tmp_path / "o.json")]) == 1
