"""A HIL test's record: what the fixtures tell it, its snapshot, report.json, JUnit properties, plots.

The collectors, targets and deployments here are fakes with only the
attributes the record reads (named so); the end-to-end run is in
tests/integration/test_reports.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.report import RecordedTest, ReportError, TestRecord, load, load_session
from hil.report.plot import readings_svg
from hil.report.render import section, session_page


@dataclass
class FakeReading:
    value: object
    time: float
    device_time: float | None = None


@dataclass
class FakeCollector:
    endpoint: str
    path: str | None
    readings: list[FakeReading] = field(default_factory=list)


def fake_deployment(endpoint="node1", reused=False, digest="sha256:" + "ab" * 32):
    steps = {"fetch": 0.010, "validate": 0.001, "create": 0.002, "write": 0.003, "install": 0.004, "activate": 0.005}
    return SimpleNamespace(endpoint=endpoint, instance=1000, name="temperature_sensor", version=1,
                           source="127.0.0.1:5000/embserve/temperature_sensor:1", digest=digest, reused=reused, steps=steps)


def recorded_with_fakes(tmp_path: Path, *, device_time: bool = False) -> tuple[TestRecord, RecordedTest]:
    firmware = tmp_path / "embserve.elf"
    firmware.write_bytes(b"\x7fELF firmware bytes")
    record = TestRecord("tests/hil/test_x.py::test_y", target="qemu", log_dir=tmp_path)
    record.node_started(SimpleNamespace(config=SimpleNamespace(board=SimpleNamespace(name="mps2_an385"), firmware=None),
                                        firmware=firmware, time_scale=1.0))
    record.injected("node1", "temperature", 20.0)
    record.deployed(fake_deployment())
    done = record.deployments[0].finished
    record.service_input("node1", 1000, "rate", 2000)
    collector = FakeCollector("node1", "/3303/0/5700")
    record.watch(collector)
    record.watch(FakeCollector("node1", None))  # never started: no path, nothing to plot
    for i, value in enumerate([20.0, 20.0, 25.5]):
        collector.readings.append(FakeReading(value, done + 1.0 + 2 * i, 100.0 + 2 * i if device_time else None))
    again = FakeCollector("node1", "/3303/0/5700", [collector.readings[-1]])  # a second collector, same reading
    record.watch(again)
    record.injected("node1", "temperature", 25.5)
    (tmp_path / "bundle").mkdir()
    return record, record.snapshot("passed", 4.5)


def test_snapshot_of_a_record_with_fake_target_collectors_and_deployment(tmp_path):
    _, test = recorded_with_fakes(tmp_path)
    assert (test.target, test.board, test.firmware) == ("qemu", "mps2_an385", str(tmp_path / "embserve.elf"))
    assert test.firmware_sha256 == hashlib.sha256(b"\x7fELF firmware bytes").hexdigest()
    assert test.bundle == str(tmp_path / "bundle") and test.log_dir == str(tmp_path)
    (series,) = test.series
    assert [p.value for p in series.points] == [20.0, 20.0, 25.5]  # each reading once
    (deploy,) = test.deployments
    assert list(deploy.steps) == ["resolve", "validate", "create", "write", "install", "activate", "first reading"]
    assert deploy.steps["first reading"] == pytest.approx(1.0)
    assert deploy.total == pytest.approx(0.025)
    assert test.junit_properties() == [
        ("target", "qemu"), ("board", "mps2_an385"), ("firmware_sha256", test.firmware_sha256),
        ("service_digest", "sha256:" + "ab" * 32), ("readings", "3"), ("deploy_ms", "25"),
    ]
    assert [p[1:] for p in test.periods_for("node1")] == [(30.0, "start"), (2.0, "rate=2000")]
    assert [i.value for i in test.injections_for(series)] == [20.0, 25.5]
    assert test.median_interval(series) == pytest.approx(2.0)


def test_report_json_round_trip_and_session_page(tmp_path):
    _, test = recorded_with_fakes(tmp_path)
    path = test.write(tmp_path)
    assert path == tmp_path / "report.json" and not list(tmp_path.glob("*.partial"))
    back = load(path)
    assert back == test
    assert load_session(tmp_path) == [test]
    html = session_page([back], "a session", tmp_path)
    assert html.count('<figure class="hil-plot"') == 1
    assert 'href="./"' in html and 'href="bundle/"' in html  # the log folder and bundle, relative to the page


def test_a_test_without_deployment_or_numbers_still_renders(tmp_path):
    record = TestRecord("t::u", target="sim", log_dir=tmp_path)
    collector = FakeCollector("n1", "/3/0/0", [FakeReading("ACME", 1.0)])
    record.watch(collector)
    test = record.snapshot("failed", 1.0)
    assert test.deploy_ms is None and test.service_digest == "" and test.firmware_sha256 is None
    assert dict(test.junit_properties())["deploy_ms"] == ""
    html = section(test, tmp_path)
    assert "no deployment in this test" in html and "none numeric, nothing to plot" in html and "<svg" not in html


def test_plot_counts_every_reading_and_uses_device_time_when_given(tmp_path):
    _, test = recorded_with_fakes(tmp_path, device_time=True)
    svg = readings_svg(test, test.series[0], "plot one")
    group = re.search(r'<g id="readings-plot-one">(.*?)</g>\s*</g>', svg, re.S)
    assert group and group.group(1).count("<use ") == 3
    assert "device time (s)" in svg
    other = tmp_path / "wall"
    other.mkdir()
    _, on_wall = recorded_with_fakes(other)
    assert "gateway receive time" in readings_svg(on_wall, on_wall.series[0], "two")


@pytest.mark.parametrize("content, fragment", [
    ("{", "not JSON"),
    ('{"schema": "other"}', "not an embserve-hil test report"),
    ('{"schema": "embserve-hil/test-report", "version": 99}', "report version 99"),
    ('{"schema": "embserve-hil/test-report", "version": 1, "nodeid": "x", "series": [{"endpoint": "a"}]}',
     "malformed test report"),
])
def test_bad_report_json_is_named_with_what_is_wrong(tmp_path, content, fragment):
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(ReportError, match=re.escape(fragment)) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_a_log_folder_that_is_not_one(tmp_path):
    with pytest.raises(ReportError, match="no such log folder"):
        load_session(tmp_path / "missing")
    with pytest.raises(ReportError, match="no report.json in it or below"):
        load_session(tmp_path)


def test_junit_properties_are_json_friendly_strings(tmp_path):
    _, test = recorded_with_fakes(tmp_path)
    assert all(isinstance(v, str) for _, v in test.junit_properties())
    json.dumps(test.to_json())
