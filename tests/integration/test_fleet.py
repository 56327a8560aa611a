"""Fleets of simulated nodes: gateway, SDF/MQTT bridge, REST API and nodes from a fleet file; the CLI around them.

Emulated nodes (QEMU, Renode) on the file's networks: test_fleet_emulated.py.
"""

from __future__ import annotations

import logging
import subprocess
import textwrap
from pathlib import Path

import aiohttp
import pytest
from conftest import SHARED, WAIT, wait_until
from fleet_helpers import cli, ctrl_c
from northbound_helpers import MqttProbe

from hil.fleet import Fleet, load_fleet, parse_fleet
from hil.lwm2m import Path as LwPath

IOTNETEMU_EXAMPLE = SHARED / "fita" / "examples" / "iotnetemu-two-nodes.yaml"


async def test_the_iotnetemu_example_runs_against_the_real_gateway(broker, caplog):
    if not IOTNETEMU_EXAMPLE.is_file():
        pytest.skip(f"FITA's IoTNetEMU example is not at {IOTNETEMU_EXAMPLE}")
    caplog.set_level(logging.INFO, logger="hil.fleet")
    async with MqttProbe(broker.host, broker.port) as probe:
        await probe.watch("announce", "unregister")
        async with Fleet(load_fleet(IOTNETEMU_EXAMPLE, simulate=True), mqtt=(broker.host, broker.port)) as fleet:
            await fleet.wait_registered(WAIT)
            apis = fleet.endpoints()
            assert apis["CoAP"] == fleet.gateway.uri and apis["MQTT"] == f"mqtt://{broker.host}:{broker.port}"
            assert apis["REST"].startswith("http://127.0.0.1:") and apis["REST"].endswith("/api")
            for ep in ("node1", "node2"):
                await probe.announce_of(ep)
            async with aiohttp.ClientSession() as http, http.get(f"{apis['REST']}/clients") as response:
                clients = await response.json()
            assert sorted(c["endpoint"] for c in clients) == ["node1", "node2"]
        for ep in ("node1", "node2"):
            await probe.unregister_of(ep)
    assert f"bootstrap address coap://10.10.12.254:5683 rewritten to the gateway's {apis['CoAP']} (2 nodes)" in caplog.text


async def test_a_ranged_fleet_registers_and_reports_readings(broker):
    specs = parse_fleet(
        {
            "nodes": {
                "fleet-r{1..30}": {
                    "bootstrap": ["embserve connector lwm2m server_add coap://192.0.2.1:5683 fleet-r{1..30}"],
                    "sensors": {"temperature": "wave:base=20,amplitude=3,period=10", "humidity": 45},
                }
            }
        }
    )
    async with Fleet(specs, mqtt=(broker.host, broker.port)) as fleet:
        await fleet.wait_registered(WAIT)
        await wait_until(lambda: fleet.bridge.stats.readings > 0, "a first reading from the fleet")
        summary = fleet.summary()
        assert (summary.nodes, summary.registered) == (30, 30)
        assert summary.line().startswith("nodes 30/30 registered, services 0, readings ")
        caps = await fleet.gateway.read("fleet-r7", "/15/0/0")
        assert caps[LwPath(15, 0, 0)] == "2;136"  # temperature and humidity


async def test_fleet_services_are_deployed_on_every_node(broker, tmp_path):
    service = SHARED / "fita" / "temperature_sensor" / "service.json"
    if not service.is_file():
        pytest.skip(f"FITA's temperature service is not at {service}")
    specs = parse_fleet({"nodes": {"svc{1..3}": {"services": [str(service)]}}})
    async with Fleet(specs, mqtt=(broker.host, broker.port), deploy_via="mqtt") as fleet:
        if fleet.nodes["svc1"].objects.handler(9) is None:
            pytest.skip("the simulated node's object 9 is not wired to the service runtime yet")
        deployed = await fleet.deploy_services()
        assert deployed == 3, fleet.deploy_failures
        await wait_until(lambda: fleet.summary().services == 3, "the nodes to report their /9 instances")


# --------------------------------------------------------------------------- the command line


def fleet_file(tmp_path: Path, count: int = 5) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            nodes:
              cli{{1..{count}}}:
                type: zephyr
                image: images/embserve.elf
                bootstrap:
                  - 'embserve connector lwm2m server_add coap://10.10.12.254:5683 cli{{1..{count}}}'
            networks:
              linux-br:
                type: linux-br
            """
        )
    )
    return path


def test_cli_prints_the_apis_and_summaries_then_stops(tmp_path, broker):
    run = subprocess.run(
        cli(str(fleet_file(tmp_path)), "--simulate", "--mqtt", f"{broker.host}:{broker.port}", "--every", "0.5", "--duration", "2"),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CoAP  coap://127.0.0.1:")
    assert lines[1] == f"MQTT  mqtt://{broker.host}:{broker.port}"
    assert lines[2].startswith("REST  http://127.0.0.1:") and lines[2].endswith("/api")
    summaries = [line for line in lines if "registered" in line]
    assert summaries and "nodes 5/5 registered" in summaries[-1], run.stdout
    assert lines[-1] == "fleet stopped"
    assert "rewritten to the gateway's coap://127.0.0.1:" in run.stderr


def test_cli_starts_its_own_broker_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        cli(str(fleet_file(tmp_path, 2)), "--simulate", "--every", "0.5", "--log-dir", str(tmp_path)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if "registered" in line:
                break
        assert any(line.startswith("MQTT  mqtt://127.0.0.1:") for line in seen), seen
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    rest, err = ctrl_c(proc, 30)
    assert proc.returncode == 0, err
    assert rest.splitlines()[-1] == "fleet stopped"
    assert (tmp_path / "mosquitto.log").is_file()


@pytest.mark.parametrize(
    "content, args, fragment",
    [
        ("nodes: {}\n", [], "non-empty 'nodes:'"),
        ("nodes: {a: {}}\n", ["--mqtt", "nohost"], "HOST:PORT"),
        ("nodes: [\n", [], "not valid YAML"),
        ("nodes: {a: {}}\n", ["--http", "70000"], "--http 70000: not a TCP port"),
    ],
)
def test_cli_rejects_bad_input_with_a_clear_message(tmp_path, content, args, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    run = subprocess.run(cli(str(path), *args), capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert fragment in run.stderr and "embserve-hil fleet:" in run.stderr


def test_cli_missing_file(tmp_path):
    run = subprocess.run(cli(str(tmp_path / "nope.yaml")), capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and "cannot read the fleet file" in run.stderr
