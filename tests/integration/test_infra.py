"""Real docker-registry and mosquitto processes: start, readiness, stop, no leftovers."""

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import hil.infra.process as process_module
from hil.infra import Broker, MissingBinaryError, NotReady, Registry, StartupError


def _group_members(pgid: int) -> list[int]:
    """PIDs whose process group is ``pgid`` (what ``pgrep -g`` would list)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _group_members(pid) == []


def test_registry_serves_the_v2_api_on_loopback_and_stops(tmp_path):
    with Registry(log_dir=tmp_path) as reg:
        pid = reg.pid
        assert reg.host == "127.0.0.1"
        assert reg.address == f"127.0.0.1:{reg.port}"
        assert reg.url == f"http://{reg.address}"
        assert _group_members(pid) == [pid]  # its own process group
        with urllib.request.urlopen(f"{reg.url}/v2/", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        config = yaml.safe_load(reg.config_path.read_text())
        assert config["http"]["addr"] == reg.address
        assert "debug" not in config["http"]
        assert config["storage"]["filesystem"]["rootdirectory"] == str(reg.storage_dir)
        assert config["storage"]["delete"]["enabled"] is True
        listening = _listening_ports(pid)
        assert listening == {reg.port}, f"registry listens on {listening}, expected only {reg.port}"
        storage = reg.storage_dir
    _assert_gone(pid)
    assert not storage.exists()  # temp storage removed
    assert reg.log_path.parent == tmp_path
    assert "GET /v2/" in reg.log_path.read_text()


def _listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_registries_work_as_async_context_managers_side_by_side(tmp_path):
    async with Registry(log_dir=tmp_path) as first, Registry(log_dir=tmp_path) as second:
        pids = [first.pid, second.pid]
        assert first.running and second.running
        assert first.port != second.port
        assert first.log_path != second.log_path and first.config_path != second.config_path
    assert not first.running and not second.running
    for pid in pids:
        _assert_gone(pid)


def test_processes_are_stopped_when_the_body_raises(tmp_path):
    pids = []
    with pytest.raises(RuntimeError, match="test body failed"):
        with Registry(log_dir=tmp_path) as reg, Broker(log_dir=tmp_path) as broker:
            pids = [reg.pid, broker.pid]
            raise RuntimeError("test body failed")
    assert len(pids) == 2
    for pid in pids:
        _assert_gone(pid)


async def test_async_processes_are_stopped_when_the_body_raises(tmp_path):
    pid = None
    with pytest.raises(ValueError):
        async with Broker(log_dir=tmp_path) as broker:
            pid = broker.pid
            raise ValueError("boom")
    _assert_gone(pid)


def test_atexit_stops_processes_left_running(tmp_path):
    script = (
        "from hil.infra import Broker\n"
        f"b = Broker(log_dir={str(tmp_path)!r}).start()\n"
        "print(b.pid, flush=True)\n"  # exits without stop(): atexit must do it
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _assert_gone(int(out.stdout.strip()))


def test_missing_binary_names_the_apt_package(tmp_path):
    class Absent(Registry):
        binary_name = "docker-registry-not-installed"
        binary_candidates = (str(tmp_path / "nowhere"),)

    with pytest.raises(MissingBinaryError, match="apt-get install docker-registry"):
        Absent(log_dir=tmp_path).start()

    class AbsentBroker(Broker):
        binary_name = "mosquitto-not-installed"
        binary_candidates = ()

    with pytest.raises(MissingBinaryError, match="apt-get install mosquitto"):
        AbsentBroker(log_dir=tmp_path).start()


def test_port_in_use_fails_with_the_log_tail_and_path(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(StartupError) as caught:
            Registry(log_dir=tmp_path, port=port).start()
    message = str(caught.value)
    assert "address already in use" in message
    assert str(tmp_path / "registry.log") in message


def test_a_port_taken_meanwhile_is_retried_on_a_new_one(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        offered = iter([taken])
        real_free_port = process_module.free_port
        monkeypatch.setattr(process_module, "free_port", lambda host: next(offered, None) or real_free_port(host))
        with Broker(log_dir=tmp_path) as broker:
            assert broker.port != taken
            assert broker.running
    log = broker.log_path.read_text()
    assert log.count("=== ") == 2  # two starts, the first on the taken port
    assert "Address already in use" in log


def test_readiness_timeout_shows_what_the_probe_saw(tmp_path):
    class NeverReady(Registry):
        def probe(self) -> None:
            raise NotReady("still booting (test)")

    reg = NeverReady(log_dir=tmp_path, ready_timeout=0.3)
    with pytest.raises(StartupError) as caught:
        reg.start()
    message = str(caught.value)
    assert "not ready" in message and "still booting (test)" in message
    assert str(reg.log_path) in message
    assert not reg.running


def test_mosquitto_relays_an_mqtt5_publish_to_a_subscriber(tmp_path):
    with Broker(log_dir=tmp_path) as broker:
        conf = broker.config_path.read_text()
        assert f"listener {broker.port} 127.0.0.1" in conf
        assert "persistence false" in conf and "set_tcp_nodelay true" in conf
        received: list[mqtt.MQTTMessage] = []
        subscribed, arrived = threading.Event(), threading.Event()

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hil-sub", protocol=mqtt.MQTTv5)
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.on_message = lambda c, u, msg: (received.append(msg), arrived.set())
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hil-pub", protocol=mqtt.MQTTv5)
        try:
            sub.connect(broker.host, broker.port)
            sub.loop_start()
            sub.subscribe("embserve/+/announce", qos=1)
            assert subscribed.wait(5), f"no SUBACK; broker log {broker.log_path}"
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("endpoint", "node1")]
            info = pub.publish("embserve/node1/announce", json.dumps({"ep": "node1"}), qos=1, properties=props)
            info.wait_for_publish(5)
            assert arrived.wait(5), f"message not delivered; broker log {broker.log_path}"
        finally:
            for client in (pub, sub):
                client.disconnect()
                client.loop_stop()
        (msg,) = received
        assert msg.topic == "embserve/node1/announce"
        assert json.loads(msg.payload) == {"ep": "node1"}
        assert msg.properties.UserProperty == [("endpoint", "node1")]
    assert "New client connected" in broker.log_path.read_text()
