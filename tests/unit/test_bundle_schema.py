"""bundle.json: what the recorder writes, load_bundle reads back unchanged; what is wrong is named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hil.bundle import VERSION, Bundle, BundleError, Step, load_bundle
from hil.bundle.schema import FirmwareRecord, ServiceRecord
from hil.faults import DeviceFault


def make_bundle(root: Path) -> Bundle:
    service_json = b'{"name": "faulty_sensor"}\n'
    (root / "services" / "s").mkdir(parents=True)
    (root / "services" / "s" / "service.json").write_bytes(service_json)
    sha = hashlib.sha256(service_json).hexdigest()
    return Bundle(
        embserve_hil="0.1.0", created="2026-12-06T00:00:00+00:00",
        test={"nodeid": "tests/hil/x.py::test_y", "outcome": "failed", "message": "boom", "duration": 1.5},
        target="qemu", board={"name": "mps2_an385", "source": "/b/mps2_an385.toml", "contents": "name = 'x'\n"},
        options={"target": "qemu", "sim_speed": 10.0, "nodes": 1}, seed=1234, endpoints=["node1"],
        firmware=FirmwareRecord("/fw/embserve.elf", "ab" * 32, "0123abcd"),
        services=[ServiceRecord("faulty_sensor", 1, sha, "services/s/service.json", "reg/x:1", "sha256:" + "cd" * 32,
                                None, None)],
        timeline=[
            Step(1, "boot", "node1", 0.1, None, {"target": "qemu"}),
            Step(2, "bootstrap", "node1", 0.2, None, {"server_uri": "coap://10.0.2.2:5683"}),
            Step(3, "deploy", "node1", 0.5, None, {"service": "faulty_sensor", "instance": 1000, "sha256": sha}),
            Step(4, "input", "node1", 2.0, None, {"instance": 1000, "key": "offset", "value": -2e8}),
            Step(5, "reboot", "node1", 3.0, None, {}),
        ],
        consoles={"node1": "consoles/node1.console.log"},
        capture={"file": "capture.pcapng", "gateway": "127.0.0.1:40000", "coap_port": 5683, "datagrams": 3},
        faults=[DeviceFault("node1", "service", "faulty_sensor", "BusFault PRECISERR pc=+0x15e", "[faulty_sensor] ...",
                            {"function": "loop", "file": "service.c", "line": 47, "address": 0x15e},
                            {"pc": 0x20014c06}, 1.0)],
        end={"wall_time": 5.0, "device_time": {"node1": None}},
        root=root,
    )


def test_round_trip(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    bundle.write(tmp_path)
    again = load_bundle(tmp_path)
    assert again.to_dict() == bundle.to_dict()
    assert again.to_dict()["version"] == VERSION
    assert again.service_json(again.services[0]) == b'{"name": "faulty_sensor"}\n'
    assert again.failure.signature() == ("service", "faulty_sensor", "service.c", 47)
    assert not list(tmp_path.glob("*.partial")), "bundle.json is written whole, through a temporary file"


def _written(tmp_path: Path, change) -> Path:
    bundle = make_bundle(tmp_path)
    data = bundle.to_dict()
    change(data)
    (tmp_path / "bundle.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("seed"), "required field 'seed' is missing"),
    (lambda d: d.update(seed="1234"), "field 'seed' has the wrong type (str)"),
    (lambda d: d.update(schema="other"), "not an embserve-hil bundle"),
    (lambda d: d.update(version=2), "unknown schema version 2; this embserve-hil reads version 1"),
    (lambda d: d["timeline"][1].pop("action"), "timeline[1]: required field 'action' is missing"),
    (lambda d: d["timeline"][1].update(action="flash"), "timeline[1]: unknown action 'flash'"),
    (lambda d: d["timeline"][2].update(index=7), "timeline steps out of order: entry 2 has index 7, expected 3"),
    (lambda d: d["timeline"][3].update(wall_time=0.3), "step 4 (input) is at wall time 0.3 s, before step 3"),
    (lambda d: d["timeline"][2]["args"].update(sha256="00"), "timeline step 3 deploys sha256 '00'"),
    (lambda d: d["timeline"][3].update(endpoint="node9"), "timeline step 4 acts on 'node9'"),
    (lambda d: d["firmware"].pop("sha256"), "field 'firmware' needs 'path' and 'sha256' strings"),
])
def test_bad_bundle_json_is_named(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(BundleError) as e:
        load_bundle(_written(tmp_path, change))
    assert message in str(e.value)
    assert str(tmp_path / "bundle.json") in str(e.value)


def test_truncated_bundle_json(tmp_path: Path) -> None:
    make_bundle(tmp_path).write(tmp_path)
    path = tmp_path / "bundle.json"
    path.write_text(path.read_text()[:300])
    with pytest.raises(BundleError, match=r"not valid JSON \(truncated or hand-edited\?\)"):
        load_bundle(tmp_path)


def test_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path)


def test_device_time_going_back_within_one_boot_is_out_of_order(tmp_path: Path) -> None:
    def device_times(d: dict) -> None:
        for step, t in zip(d["timeline"], [0.0, 0.1, 5.0, 4.0, 6.0]):
            step["device_time"] = t

    with pytest.raises(BundleError, match=r"step 4 \(input\) is at device time 4.0 s, before the previous step's 5.0 s"):
        load_bundle(_written(tmp_path, device_times))


def test_service_json_not_matching_its_digest_names_both(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (tmp_path / "services" / "s" / "service.json").write_bytes(b"{}")
    with pytest.raises(BundleError) as e:
        bundle.service_json(bundle.services[0])
    assert bundle.services[0].sha256 in str(e.value) and hashlib.sha256(b"{}").hexdigest() in str(e.value)


def test_recorder_keeps_secrets_out_of_the_bundle(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from hil.bundle import Recorder
    from hil.secret import Secret

    token = Secret("s3cr3t-api-token")
    console = tmp_path / "node1.console.log"
    console.write_text("boot\nlogin with s3cr3t-api-token\n")
    device = SimpleNamespace(endpoint="node1", firmware_elf=None, console=SimpleNamespace(log_path=console),
                             device_time=lambda: None, faults=SimpleNamespace(faults=[]))
    recorder = Recorder(nodeid="t::x", target="sim",
                        options={"hil_api_token": token, "mqtt_password": "plain-pw", "target": "sim"})
    recorder.add_device(device)
    path = recorder.write(tmp_path / "bundle", outcome="failed")
    text = path.read_text()
    assert "s3cr3t-api-token" not in text and "plain-pw" not in text
    assert json.loads(text)["options"] == {"hil_api_token": "***", "mqtt_password": "***", "target": "sim"}
    copied = (path.parent / json.loads(text)["consoles"]["node1"]).read_text()
    assert copied == "boot\nlogin with ***\n"
