"""Sensors: fixed, seeded waveform, CSV replay, spec parsing, errors."""

from __future__ import annotations

import math

import pytest

from hil.device.sensors import (
    SENSOR_IDS,
    Fixed,
    SensorError,
    Sensors,
    Trace,
    Waveform,
    make_source,
    parse_sensor_spec,
)


def test_fixed_source_and_sensor_set():
    now = [0.0]
    sensors = Sensors({"temperature": 21.5, "humidity": "40"}, lambda: now[0])
    temperature = sensors["temperature"]
    assert temperature.id == 2 and temperature.units == "Cel" and sensors["humidity"].id == 136
    assert temperature.read() == 21.5 and not temperature.source.varies
    changed = []
    temperature.add_listener(lambda s: changed.append(s.read()))
    temperature.set(25.5)
    assert temperature.read() == 25.5 and changed == [25.5]
    assert list(sensors) == ["temperature", "humidity"]


def test_waveform_is_deterministic_for_a_seed_and_independent_of_sampling():
    wave = Waveform(base=20, amplitude=2, period=60, noise=0.3, seed=7)
    same = Waveform(base=20, amplitude=2, period=60, noise=0.3, seed=7)
    other = Waveform(base=20, amplitude=2, period=60, noise=0.3, seed=8)
    times = [0.0, 0.5, 1.0, 15.0, 30.2, 44.9, 3600.0]
    dense = [wave.value(t / 10) for t in range(600)]  # many reads in between change nothing
    assert [wave.value(t) for t in times] == [same.value(t) for t in times]
    assert [wave.value(t) for t in times] != [other.value(t) for t in times]
    assert dense[150] == wave.value(15.0)

    def noise(t: float) -> float:
        return wave.value(t) - (20 + 2 * math.sin(2 * math.pi * t / 60))

    assert all(abs(noise(t)) <= 0.3 for t in times)
    assert noise(0.2) == pytest.approx(noise(0.7))  # the noise holds for one noise_step
    assert noise(0.2) != pytest.approx(noise(1.2))
    assert Waveform(base=20, amplitude=2, period=60).value(15.0) == pytest.approx(22.0)


def test_waveform_parameters_are_checked():
    with pytest.raises(SensorError, match="period must be > 0"):
        Waveform(base=1, period=0)
    with pytest.raises(SensorError, match="noise must be >= 0"):
        Waveform(base=1, noise=-1)


def test_csv_trace_replays_with_step_hold(tmp_path):
    trace_file = tmp_path / "temp.csv"
    trace_file.write_text("time_s,value\n# warm-up\n0,20.0\n10,21.5\n\n30,19\n")
    trace = Trace.from_csv(trace_file)
    assert [trace.value(t) for t in (-5, 0, 9.99, 10, 29, 30, 1000)] == [
        20.0,
        20.0,
        20.0,
        21.5,
        21.5,
        19.0,
        19.0,
    ]
    assert trace.varies


def test_csv_trace_without_header_and_unsorted_rows(tmp_path):
    trace_file = tmp_path / "t.csv"
    trace_file.write_text("5,2\n0,1\n")
    assert Trace.from_csv(trace_file).value(6) == 2.0


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "time_s,value\n0,20\n5,warm\n",
            r"line 3: time_s and value must be numbers, got '5,warm'",
        ),
        ("time_s,value\n0,20,7\n", r"line 2: expected 2 columns time_s,value, got 3"),
        ("time_s,value\n0,nan\n", r"line 2: time_s and value must be finite"),
        ("time_s,value\n", r"the trace has no samples"),
    ],
)
def test_bad_csv_rows_name_file_and_line(tmp_path, text, words):
    trace_file = tmp_path / "bad.csv"
    trace_file.write_text(text)
    with pytest.raises(SensorError, match=words) as info:
        Trace.from_csv(trace_file)
    assert str(trace_file) in str(info.value)


def test_missing_trace_file_is_named(tmp_path):
    with pytest.raises(SensorError, match=r"cannot read sensor trace .*nope\.csv"):
        Trace.from_csv(tmp_path / "nope.csv")


def test_spec_strings(tmp_path):
    assert parse_sensor_spec("temperature=21.5") == ("temperature", Fixed(21.5))
    name, wave = parse_sensor_spec("humidity=wave:base=40,amplitude=5,period=120,noise=0.5,seed=3")
    assert name == "humidity" and wave == Waveform(base=40, amplitude=5, period=120, noise=0.5, seed=3)
    (tmp_path / "p.csv").write_text("0,1013\n")
    name, trace = parse_sensor_spec(f"pressure=csv:{tmp_path / 'p.csv'}")
    assert name == "pressure" and trace.value(0) == 1013
    assert make_source(Fixed(3)) == Fixed(3)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("temperature", "expected NAME=VALUE"),
        ("sonar=3", "unknown sensor 'sonar'"),
        ("temperature=hot", "'hot' is not a number"),
        ("temperature=wave:amplitude=2", "a waveform needs base=VALUE"),
        ("temperature=wave:base=1,colour=2", "bad waveform parameter 'colour=2'"),
        ("temperature=wave:base=x", "base='x' is not a number"),
        ("temperature=csv:", "'csv:' needs a file path"),
    ],
)
def test_bad_spec_strings(spec, words):
    with pytest.raises(SensorError, match=words):
        parse_sensor_spec(spec)


def test_unknown_sensor_on_a_node_lists_what_it_has():
    sensors = Sensors({"temperature": 1}, lambda: 0.0)
    with pytest.raises(SensorError, match="no sensor 'light' on this node: it has temperature"):
        sensors["light"]
    with pytest.raises(SensorError, match="unknown sensor 'sonar'"):
        Sensors({"sonar": 1}, lambda: 0.0)
    assert set(SENSOR_IDS) >= {"temperature", "humidity", "pressure", "light"}
