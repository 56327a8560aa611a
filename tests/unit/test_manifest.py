"""service.json: the real FITA manifest, round trips, and every bad field named."""

from __future__ import annotations

import base64
import copy
import json
import struct
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FITA_SERVICE

from hil.service.udlm import Module, Relocation, Symbol, SymbolKind
from hil.service.manifest import (
    IOSpec,
    Manifest,
    ManifestError,
    Mapping,
    ValueType,
    parse_manifest,
)



def module_bytes(exports: tuple[str, ...] = ("setup", "loop")) -> bytes:
    symbols = [Symbol(SymbolKind.MODULE_NAME, 0, False, "probe")]
    symbols += [Symbol(SymbolKind.EXPORTED, 1 + 28 * i, True, name) for i, name in enumerate(exports)]
    symbols.append(Symbol(SymbolKind.EXTERN, 0, False, "embserve_sleep_impl"))
    module = Module(num_lot=1, relocations=[Relocation(0, len(symbols) - 1)], symbols=symbols, code=bytes(64))
    return module.pack()


def good() -> dict[str, Any]:
    return {
        "name": "probe",
        "version": 2,
        "data_model": ["lwm2m:urn:oma:lwm2m:ext:3303"],
        "service": base64.b64encode(module_bytes()).decode(),
        "dependencies": {"sdk_api": 1},
        "inputs": [{"key": "rate", "type": 0, "data_model_mapping": []}],
        "outputs": [{"key": "value", "type": 1, "data_model_mapping": ["lwm2m:3303/x/5700"]}],
    }


def fita_bytes() -> bytes:
    if not FITA_SERVICE.is_file():
        pytest.skip(f"FITA artifacts not available at {FITA_SERVICE}")
    return FITA_SERVICE.read_bytes()


def test_fita_manifest_fields():
    manifest = parse_manifest(fita_bytes())
    assert manifest.name == "temperature_sensor"
    assert manifest.version == 1
    assert manifest.sdk_api == 1
    assert manifest.data_model == ("lwm2m:urn:oma:lwm2m:ext:3303",)
    assert manifest.inputs == (IOSpec("rate", ValueType.INT, ()),)
    assert manifest.outputs == (IOSpec("value", ValueType.FLOAT, ("lwm2m:3303/x/5700",)),)
    assert manifest.outputs[0].mappings == [Mapping(3303, 5700)]
    assert manifest.service[:4] == b"UDLM"
    assert manifest.module is not None and manifest.module.name == "temperature_sensor"


def test_fita_manifest_round_trips_to_identical_json():
    raw = fita_bytes()
    manifest = parse_manifest(raw)
    assert json.loads(manifest.to_json()) == json.loads(raw)
    assert parse_manifest(manifest.to_json()) == manifest


def test_accepts_bytes_text_and_objects_alike():
    obj = good()
    from_obj = parse_manifest(obj)
    assert parse_manifest(json.dumps(obj)) == from_obj
    assert parse_manifest(json.dumps(obj).encode()) == from_obj
    assert from_obj.input("rate") == IOSpec("rate", ValueType.INT, ())
    assert from_obj.output("nope") is None


def test_optional_fields_absent_stay_absent_and_unknown_fields_survive():
    obj = good()
    del obj["data_model"]
    del obj["inputs"][0]["data_model_mapping"]
    obj["x_vendor"] = {"build": 7}
    manifest = parse_manifest(obj)
    assert manifest.data_model is None
    assert manifest.inputs[0].data_model_mapping is None
    assert manifest.extra == {"x_vendor": {"build": 7}}
    assert json.loads(manifest.to_json()) == obj


def test_manifest_built_in_code_serialises_valid():
    manifest = Manifest(
        name="probe",
        version=1,
        service=module_bytes(),
        sdk_api=1,
        outputs=(IOSpec("count", ValueType.INT, ("lwm2m:3300/x/5700",)),),
    )
    again = parse_manifest(manifest.to_json())
    assert again.outputs == manifest.outputs
    assert again.service == manifest.service


def _set(path: list, value: Any) -> Callable[[dict], None]:
    def apply(obj: dict) -> None:
        target = obj
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return apply


_DELETE = object()


def _module_b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def _bad_reloc_module() -> bytes:
    blob = module_bytes()
    return blob[:24] + struct.pack("<I", 5) + blob[28:]  # LOT index 5 of 1


CASES = [
    (_set(["name"], _DELETE), "name", "missing"),
    (_set(["name"], ""), "name", "must not be empty"),
    (_set(["version"], "1"), "version", "expected an integer, got a string"),
    (_set(["version"], True), "version", "expected an integer, got a boolean"),
    (_set(["version"], -1), "version", "must be >= 0, got -1"),
    (_set(["data_model"], "lwm2m:urn"), "data_model", "expected a list, got a string"),
    (_set(["data_model"], [3303]), "data_model[0]", "expected a string, got an integer"),
    (_set(["dependencies"], _DELETE), "dependencies", "missing"),
    (_set(["dependencies", "sdk_api"], _DELETE), "dependencies.sdk_api", "missing"),
    (_set(["dependencies", "sdk_api"], 99), "dependencies.sdk_api", "sdk_api 99 is not supported (this runtime provides 1)"),
    (_set(["dependencies", "sdk_api"], "1"), "dependencies.sdk_api", "expected an integer, got a string"),
    (_set(["inputs"], _DELETE), "inputs", "missing"),
    (_set(["inputs"], {}), "inputs", "expected a list, got an object"),
    (_set(["inputs", 0], "rate"), "inputs[0]", "expected an object, got a string"),
    (_set(["inputs", 0, "key"], _DELETE), "inputs[0].key", "missing"),
    (_set(["inputs", 0, "key"], "k" * 32), "inputs[0].key", "is longer than 31 bytes"),
    (_set(["inputs", 0, "type"], 2), "inputs[0].type", "unknown type 2 (0 = int, 1 = float)"),
    (_set(["inputs", 0, "type"], 1.0), "inputs[0].type", "expected an integer, got a number"),
    (_set(["outputs"], [{"key": "v", "type": 1}, {"key": "v", "type": 0}]), "outputs[1].key", "duplicate key 'v'"),
    (_set(["outputs", 0, "data_model_mapping"], "lwm2m:3303/x/5700"), "outputs[0].data_model_mapping", "expected a list, got a string"),
    (_set(["outputs", 0, "data_model_mapping"], ["lwm2m:3303/0/5700"]), "outputs[0].data_model_mapping[0]", "'lwm2m:3303/0/5700' is not of the form lwm2m:<obj>/x/<res>"),
    (_set(["outputs", 0, "data_model_mapping"], ["lwm2m:temp/x/5700"]), "outputs[0].data_model_mapping[0]", "not of the form"),
    (_set(["service"], _DELETE), "service", "missing"),
    (_set(["service"], "VURMTQ@@"), "service", "not valid base64"),
    (_set(["service"], "VURMTQ"), "service", "not valid base64"),
    (_set(["service"], _module_b64(b"ELF\x7f" + module_bytes()[4:])), "service", "bad udynlink module: at offset 0x0: bad magic b'ELF\\x7f', expected b'UDLM'"),
    (_set(["service"], _module_b64(module_bytes()[:-8])), "service", "bad udynlink module: at offset 0x4: header sizes"),
    (_set(["service"], _module_b64(_bad_reloc_module())), "service", "bad udynlink module: at offset 0x18: relocation 0: slot 5 is out of range"),
    (_set(["service"], _module_b64(module_bytes(("setup",)))), "service", "module exports no 'loop' function (exports: setup)"),
]


@pytest.mark.parametrize("mutate, path, problem", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_bad_field_is_named(mutate, path, problem):
    obj = copy.deepcopy(good())
    mutate(obj)
    with pytest.raises(ManifestError) as info:
        parse_manifest(obj, source="probe/service.json")
    assert info.value.path == path
    assert problem in info.value.problem
    assert str(info.value).startswith(f"probe/service.json: {path}: ")


def test_sdk_api_99_message_is_exact():
    obj = good()
    obj["dependencies"]["sdk_api"] = 99
    with pytest.raises(ManifestError) as info:
        parse_manifest(obj)
    assert str(info.value) == "service.json: dependencies.sdk_api: sdk_api 99 is not supported (this runtime provides 1)"


def test_invalid_json_names_line_and_column():
    text = json.dumps(good(), indent=2).replace('"version": 2', '"version": 2,,')
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if ",," in l)
    assert f"invalid JSON at line {line} column" in str(info.value)


def test_top_level_must_be_an_object():
    with pytest.raises(ManifestError, match="expected a JSON object at the top level, got a list"):
        parse_manifest("[]")


def test_non_utf8_bytes():
    with pytest.raises(ManifestError, match="not UTF-8 text"):
        parse_manifest(b'{"name": "\xff"}')
