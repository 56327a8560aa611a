"""Fleets as IoTNetEMU runs them: nodes booted from their images on QEMU, on the file's networks in a namespace.

FITA's two-node example is read from ../shared and copied, unmodified, into
a temporary IoTNetEMU layout (config.yaml next to images/embserve.elf, the
reference firmware from the per-user cache). Tests that need network
namespaces skip without the privileges; the non-root fallback is run with
every capability dropped (setpriv).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SHARED, WAIT, skip_without_qemu_tools, wait_until
from fleet_helpers import cli, ctrl_c
from qemu_helpers import sdk_service

from hil.faredge.deployer import Deployer
from hil.fleet import Fleet, FleetError, load_fleet, parse_fleet
from hil.infra.netns import namespaces, unavailable_reason

IOTNETEMU_EXAMPLE = SHARED / "fita" / "examples" / "iotnetemu-two-nodes.yaml"
TEMPERATURE_SERVICE = REPO / "services" / "temperature_sensor"
START = 60.0  # seconds a fleet of emulated nodes may take to come up on a busy 2-core machine


def need_namespaces() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"needs network namespaces: {reason}")


@pytest.fixture
def images(tmp_path: Path, hil_reference_firmware) -> Path:
    """A directory with images/embserve.elf (the reference firmware), as IoTNetEMU lays its files out."""
    skip_without_qemu_tools()
    (tmp_path / "images").mkdir()
    shutil.copy(hil_reference_firmware("mps2_an385"), tmp_path / "images" / "embserve.elf")
    return tmp_path


@pytest.fixture
def example(images: Path) -> Path:
    """FITA's two-node example, unmodified, next to its image."""
    if not IOTNETEMU_EXAMPLE.is_file():
        pytest.skip(f"FITA's IoTNetEMU example is not at {IOTNETEMU_EXAMPLE} (../shared next to the checkout)")
    shutil.copy(IOTNETEMU_EXAMPLE, images / "config.yaml")
    return images / "config.yaml"


@pytest.fixture
def service_json(tmp_path: Path) -> Path:
    """The project's temperature_sensor service, built with the SDK."""
    sdk_service(TEMPERATURE_SERVICE, tmp_path / "service-build")
    return tmp_path / "service-build" / "service.json"


def read_from_each(fleet: Fleet, names: list[str]) -> bool:
    return all(fleet.bridge.stats.readings_by_endpoint.get(name) for name in names)


async def test_fitas_two_node_example_runs_unmodified_on_its_bridge(example, service_json, broker, tmp_path):
    need_namespaces()
    async with Fleet(load_fleet(example), mqtt=(broker.host, broker.port), log_dir=tmp_path / "logs") as fleet:
        namespace = fleet.network.namespace.name
        # the file's linux-br network is a bridge in the fleet's namespace, the host's address on it, a TAP per node
        assert "10.10.12.254/24" in fleet.network.namespace.ip("-o", "addr", "show", "lnxbr-0")
        taps = fleet.network.namespace.ip("-o", "link", "show", "master", "lnxbr-0")
        assert re.findall(r"\d+: (tap\d+)", taps) == ["tap1", "tap2"]
        assert fleet.gateway.uri == "coap://10.10.12.254:5683"
        await fleet.wait_registered(START)
        regs = fleet.gateway.registrations
        assert {ep: regs[ep].address[0] for ep in ("node1", "node2")} == {"node1": "10.10.12.1", "node2": "10.10.12.2"}
        log = (tmp_path / "logs" / "node1.console.log").read_text()
        assert "embserve connector lwm2m server_add coap://10.10.12.254:5683 node1" in log  # as written
        assert "eth0: address 10.10.12.1 netmask 255.255.255.0 gateway 10.10.12.254" in log
        # a deploy reaches each node: node1 straight over LwM2M, node2 the kubelet's way over SDF/MQTT
        for endpoint, via in (("node1", "lwm2m"), ("node2", "mqtt")):
            async with Deployer(fleet.gateway, via=via, broker=fleet.mqtt_address) as deployer:
                deployment = await deployer.deploy(service_json, endpoint)
            assert deployment.name == "temperature_sensor"
        await wait_until(lambda: read_from_each(fleet, ["node1", "node2"]), "a reading from node1 and node2", WAIT)
        summary = fleet.summary()
        assert (summary.registered, summary.services) == (2, 2) and summary.kinds["qemu"].services == 2
        assert "(qemu 2/2, services 2, " in summary.line()
    assert namespace not in namespaces()


ECHO_PROBE = """\
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.3)
while True:
    sock.sendto(b"probe", (sys.argv[1], 7))  # the firmware's UDP echo port
    try:
        data, sender = sock.recvfrom(100)
    except OSError:
        time.sleep(0.2)
        continue
    print(f"echo from {sender[0]}: {data.decode()}", flush=True)
    time.sleep(3600)
"""


async def test_twenty_qemu_nodes_run_the_temperature_service(images, service_json, broker):
    (images / "probe.py").write_text(ECHO_PROBE)
    doc = {
        "nodes": {
            "t{01..20}": {
                "type": "zephyr", "image": "images/embserve.elf",
                "bootstrap": ["embserve connector lwm2m server_add coap://10.20.0.1:5683 t{01..20}"],
                "networks": {"lan": {"ipv4_address": "10.20.0.{101..120}"}},
                "services": [str(service_json)],
            }
        },
        "networks": {"lan": {"type": "linux-br", "host_address": "10.20.0.1/24"}},
        # IoTNetEMU's native applications run inside the fleet's namespace; this one talks to node t01
        "applications": {"probe": {"type": "native", "image": f"{sys.executable} {images / 'probe.py'} 10.20.0.101"}},
    }
    names = [f"t{i:02d}" for i in range(1, 21)]
    # without the privileges for a namespace this is the user-networking fallback: the same fleet, rewritten
    async with Fleet(parse_fleet(doc, "twenty.yaml", base=images), mqtt=(broker.host, broker.port),
                     log_dir=images / "logs") as fleet:
        await fleet.wait_registered(START)
        if fleet.network.in_namespace:
            assert fleet.gateway.registrations["t07"].address[0] == "10.20.0.107"
            probe_log = images / "logs" / "app-probe.log"
            await wait_until(lambda: "echo from 10.20.0.101: probe" in probe_log.read_text(),
                             f"the native application's echo from t01 in {probe_log}")
        assert await fleet.deploy_services(START) == 20, fleet.deploy_failures
        await wait_until(lambda: read_from_each(fleet, names), "a temperature reading from each of the 20 nodes", START)
        summary = fleet.summary()
        assert (summary.nodes, summary.registered, summary.services) == (20, 20, 20)
        assert set(summary.kinds) == {"qemu"}


async def test_simulated_nodes_on_a_network_register_from_their_addresses(broker):
    need_namespaces()
    doc = {"nodes": {"sim{1..3}": {"type": "sim", "networks": {"lan": {}}}},
           "networks": {"lan": {"type": "linux-br", "host_address": "192.168.77.1/24"}}}
    async with Fleet(parse_fleet(doc, "sims.yaml"), mqtt=(broker.host, broker.port)) as fleet:
        await fleet.wait_registered(WAIT)
        assert sorted(r.address[0] for r in fleet.gateway.registrations.values()) == [
            "192.168.77.2", "192.168.77.3", "192.168.77.4"]
        assert fleet.gateway.uri == "coap://192.168.77.1:5683"  # no bootstrap commands: the default one
        assert (await fleet.gateway.read("sim2", "/3/0/0"))  # and the gateway reaches them there


async def test_a_native_application_that_cannot_run_stops_the_fleet_naming_it(broker, tmp_path):
    need_namespaces()
    doc = {"nodes": {"sim1": {"type": "sim", "networks": {"lan": {}}}},
           "networks": {"lan": {"type": "linux-br", "host_address": "192.168.78.1"}},
           "applications": {"proxy": {"type": "native", "image": "socat-not-installed UDP4-LISTEN:5683,fork"}}}
    before = set(namespaces())
    with pytest.raises(FleetError) as err:
        async with Fleet(parse_fleet(doc, "apps.yaml"), mqtt=(broker.host, broker.port), log_dir=tmp_path):
            pass
    assert str(err.value).startswith("apps.yaml: applications.proxy.image: command 'socat-not-installed"
                                     " UDP4-LISTEN:5683,fork' ended at once: exec of \"socat-not-installed\" failed")
    assert set(namespaces()) <= before  # nothing half-started is left


@pytest.mark.requires_renode
async def test_a_renode_node_joins_the_same_bridge_over_its_slip_line(images, broker):
    need_namespaces()
    node = lambda n, **more: {  # noqa: E731
        "type": "zephyr", "image": "images/embserve.elf", **more,
        "bootstrap": [f"embserve connector lwm2m server_add coap://10.10.12.254:5683 {n}"],
        "networks": {"lan": {"ipv4_address": f"10.10.12.{1 if n == 'qemu1' else 2}"}},
    }
    doc = {"nodes": {"qemu1": node("qemu1"), "renode1": node("renode1", backend="renode")},
           "networks": {"lan": {"type": "linux-br", "host_address": "10.10.12.254"}}}
    async with Fleet(parse_fleet(doc, "mixed.yaml", base=images), mqtt=(broker.host, broker.port),
                     log_dir=images / "logs") as fleet:
        await fleet.wait_registered(START)
        regs = fleet.gateway.registrations
        assert (regs["qemu1"].address[0], regs["renode1"].address[0]) == ("10.10.12.1", "10.10.12.2")
        assert "sl2" in fleet.network.namespace.ip("-o", "link")  # the Renode node's SLIP line, as a TUN
        content = await fleet.gateway.read("renode1", "/3/0/17")
        assert "embServe" in str(next(iter(content.values())))
        assert set(fleet.summary().kinds) == {"qemu", "renode"}


# --------------------------------------------------------------------------- the command line


def qemu_children(pid: int) -> list[int]:
    """QEMU processes the fleet command started (each leads its own session, parented by the command)."""
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "qemu" in line]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


def left_behind(pid: int, qemus: list[int]) -> list[str]:
    """What the fleet command with this pid left: namespaces named after it, QEMU processes."""
    leftovers = [f"namespace {n}" for n in namespaces() if n.startswith(f"ehil-{pid}-")]
    leftovers += [f"qemu pid {q}" for q in qemus if alive(q)]
    return leftovers


def start_fleet(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = START) -> list[str]:
    """stdout lines up to the first one holding ``text`` (or the end of the output, or ``timeout``)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if text in line or time.monotonic() > deadline:
            break
    return seen


def test_cli_stop_ctrl_c_and_a_failed_node_leave_nothing_behind(example, broker, tmp_path):
    need_namespaces()
    mqtt = ["--mqtt", f"{broker.host}:{broker.port}", "--every", "0.5"]
    # a normal stop (--duration)
    proc = start_fleet([str(example), *mqtt, "--duration", "3"])
    seen = read_until(proc, "fleet 2 nodes from")  # the nodes are up by then
    qemus = qemu_children(proc.pid)
    out, err = proc.communicate(timeout=START)
    out = "\n".join(seen) + "\n" + out
    assert proc.returncode == 0, err
    assert "nodes 2/2 registered" in out and out.splitlines()[-1] == "fleet stopped"
    assert len(qemus) == 2, f"expected 2 QEMU processes of the fleet, saw {qemus}"
    assert left_behind(proc.pid, qemus) == []

    # Ctrl-C
    proc = start_fleet([str(example), *mqtt])
    seen = read_until(proc, "nodes 2/2 registered")
    qemus = qemu_children(proc.pid)
    running = [n for n in namespaces() if n.startswith(f"ehil-{proc.pid}-")]
    rest, err = ctrl_c(proc, START)
    assert "nodes 2/2 registered" in seen[-1], seen
    assert running, "no namespace while the fleet ran"
    assert f"net   namespace {running[0]}: linux-br on lnxbr-0 (host 10.10.12.254/24); look inside with:" in "\n".join(seen)
    assert proc.returncode == 0, err
    assert rest.splitlines()[-1] == "fleet stopped"
    assert len(qemus) == 2 and left_behind(proc.pid, qemus) == []

    # a node that fails: its bootstrap command is refused (node1 may be up by then)
    bad = tmp_path / "bad" / "config.yaml"
    shutil.copytree(example.parent / "images", bad.parent / "images")  # its own image path, to find its QEMUs by
    bad.write_text(example.read_text().replace("coap://10.10.12.254:5683 node2", "10.10.12.254 node2"))
    proc = start_fleet([str(bad), *mqtt])
    out, err = proc.communicate(timeout=START)
    assert proc.returncode == 2, err
    message = [line for line in err.splitlines() if line.startswith("embserve-hil fleet:")]
    assert message == [
        f"embserve-hil fleet: {bad}: nodes.node2.bootstrap: the node refused 'embserve connector lwm2m server_add"
        f" 10.10.12.254 node2': server_add: invalid server URI '10.10.12.254' (expected coap://HOST:PORT)"
    ], err
    assert "fleet stopped" not in out
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(bad.parent) not in running and left_behind(proc.pid, []) == []


def test_without_the_privileges_each_node_gets_user_networking_said_once(example, broker, tmp_path):
    setpriv = shutil.which("setpriv")
    argv = cli(str(example), "--mqtt", f"{broker.host}:{broker.port}", "--every", "0.5", "--duration", "3",
               "--log-dir", str(tmp_path / "logs"))
    if unavailable_reason() is None:
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to run the fleet without capabilities")
        argv = [setpriv, "--bounding-set=-all", "--inh-caps=-all", *argv]  # root without CAP_NET_ADMIN/CAP_SYS_ADMIN
    run = subprocess.run(argv, capture_output=True, text=True, timeout=START, check=False)
    assert run.returncode == 0, run.stderr
    assert "nodes 2/2 registered" in run.stdout and "\nnet   user networking per node (" in run.stdout, run.stdout
    fallback = [line for line in run.stderr.splitlines() if "no network namespace" in line]
    assert len(fallback) == 1 and "Each node gets user networking instead" in fallback[0], run.stderr
    assert re.search(r"bootstrap address coap://10\.10\.12\.254:5683 rewritten to the gateway's coap://10\.0\.2\.2:\d+ \(2 nodes\)",
                     run.stderr), run.stderr
    assert "server_add coap://10.0.2.2:" in (tmp_path / "logs" / "node2.console.log").read_text()
