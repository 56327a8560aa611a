"""The northbound APIs off loopback: a network namespace of the test's own with a lab address
(10.x on a veth pair whose both ends are in it), the real `embserve-hil fleet` bound there, and a client in the
same namespace. No traffic leaves namespaces the test created; the namespace goes even on failure."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.gateway.rest import OpenApiRefused, RestApi
from hil.infra.broker import Broker
from hil.infra.certs import fingerprint_of
from hil.infra.process import InfraError

HERE = Path(__file__).parent
FLEET = "nodes:\n  node1:\n    sensors: {temperature: 21.5}\n"


@pytest.fixture
def lab_namespace():
    """(namespace, address): a namespace with lo and both ends of a veth pair, one holding a 10.x address."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2 (ip)")
    name = f"hil-lab-{os.getpid()}-{random.randrange(1 << 16):04x}"
    address = f"10.{random.randrange(200, 250)}.{random.randrange(256)}.1"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "lab0", "type", "veth", "peer", "name", "lab1")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "lab0")
        ip("-n", name, "addr", "add", f"{address[:-1]}2/24", "dev", "lab1")
        ip("-n", name, "link", "set", "lab0", "up")
        ip("-n", name, "link", "set", "lab1", "up")
        yield name, address
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_refusals_to_serve_open_beyond_loopback(tmp_path):
    with pytest.raises(OpenApiRefused, match="--api-token-file") as caught:
        RestApi(object(), "10.231.0.1")
    assert "\n" not in str(caught.value)
    with pytest.raises(InfraError, match="--insecure-open"):
        Broker(log_dir=tmp_path, host="10.231.0.1")
    (tmp_path / "fleet.yaml").write_text(FLEET)
    done = subprocess.run([sys.executable, "-m", "hil.cli", "fleet", str(tmp_path / "fleet.yaml"), "--host", "10.231.0.1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--api-token-file" in lines[0] and "--insecure-open" in lines[0]


def test_fleet_beyond_loopback_needs_token_password_and_tls(lab_namespace, tmp_path):
    namespace, address = lab_namespace
    (tmp_path / "fleet.yaml").write_text(FLEET)
    token_file, state = tmp_path / "token", tmp_path / "state"
    fleet = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "hil.cli", "fleet", str(tmp_path / "fleet.yaml"),
         "--host", address, "--api-token-file", str(token_file), "--state-dir", str(state), "--log-dir", str(tmp_path),
         "--duration", "60", "--every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any(line.startswith("nodes 1/1") or " nodes 1/1 registered" in line for line in seen):
            line = fleet.stdout.readline()
            if not line or time.monotonic() > deadline:
                fleet.terminate()
                pytest.fail(f"the fleet did not come up; stdout {seen}, stderr {fleet.communicate(timeout=10)[1][-2000:]}")
            seen.append(line.rstrip("\n"))
        text = "\n".join(seen)
        rest = re.search(r"^REST\s+(\S+)", text, re.M).group(1)
        mqtt_host, mqtt_port = re.search(r"^MQTT\s+mqtts://([\d.]+):(\d+)", text, re.M).groups()
        cert, fingerprint = re.search(r"certificate (\S+), SHA-256 fingerprint (\S+)", text).groups()
        user, password_file = re.search(r"MQTT user (\S+), password in (\S+) ", text).groups()
        token = re.search(r"^REST token (\S+)$", text, re.M).group(1)
        assert mqtt_host == address and rest.startswith(f"http://{address}:")
        probe = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, str(HERE / "offloopback_probe.py"),
                                rest, token, mqtt_host, mqtt_port, cert, user, password_file],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        seen_by_client = json.loads(probe.stdout)
    finally:
        fleet.terminate()
        out, err = fleet.communicate(timeout=20)
    assert (seen_by_client["rest_without_token"], seen_by_client["rest_wrong_token"], seen_by_client["rest_right_token"]) == (401, 401, 200)
    assert seen_by_client["clients"] == ["node1"]
    assert (seen_by_client["page_without_token"], seen_by_client["page_basic_token"]) == (401, 200)
    assert seen_by_client["mqtt_anonymous_tls"] == "Not authorized"
    assert seen_by_client["mqtt_plain_tcp"] != "Success" and seen_by_client["mqtt_user"] == "Success"
    # the token: generated into the 0600 file, printed once, nowhere else
    assert token_file.read_text().strip() == token and (token_file.stat().st_mode & 0o777) == 0o600
    everything = "\n".join(seen) + out + err
    assert everything.count(token) == 1
    assert fingerprint == fingerprint_of(Path(cert).read_bytes())
    assert (Path(password_file).stat().st_mode & 0o777) == 0o600


async def test_rest_channel_sends_the_token(tmp_path):
    from hil.device.node import Node
    from hil.faredge.channel_rest import RestChannel
    from hil.faredge.channels import DeployStepError
    from hil.gateway.server import Gateway
    from hil.secret import new_token_file

    token = new_token_file(tmp_path / "token")
    async with Gateway() as gw, RestApi(gw, token=token) as api, Node("node1") as node:
        await node.connect(gw.uri)
        await gw.wait_for_registration("node1", timeout=10)
        async with RestChannel(api.url, token=token) as channel:
            assert await channel.instances("node1") == []
        async with RestChannel(api.url) as channel:
            with pytest.raises(DeployStepError, match="HTTP 401, status UNAUTHORIZED: no bearer token"):
                await channel.instances("node1")
        assert api.refused == 1
