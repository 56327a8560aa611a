"""DTLS-PSK on the CoAP path: the real tinydtls (DTLSSocket) under aiocoap, gateway and simulated node.

Registration, a read and a deploy go over one DTLS session; a wrong key never gets a registration;
a NoSec Register (or one with another identity) for a secured endpoint is refused and the secured
registration stays; the Security object reflects the mode and is closed to the server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiocoap
import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code

from hil.device.node import Node
from hil.faredge.deployer import Deployer
from hil.gateway.errors import GatewayRequestError
from hil.gateway.server import Gateway
from hil.lwm2m.security import MODE_NOSEC, MODE_PSK, PskTable, parse_psk
from hil.lwm2m.transmission import TransmissionParameters
from hil.readings import ReadingCollector

pytest.importorskip("DTLSSocket.dtls", reason="DTLS-PSK needs DTLSSocket (pip install DTLSSocket; scripts/bootstrap.sh does)")
pytestmark = [pytest.mark.sim]

KEY = "000102030405060708090a0b0c0d0e0f"
FAST = TransmissionParameters(ack_timeout=0.2)


async def test_registration_read_and_deploy_over_dtls(temperature_service_json, tmp_path):
    cred = parse_psk(f"node1-id:{KEY}")
    table = PskTable({"node1": cred, "node2": parse_psk(f"node2-id:{KEY[::-1]}")})
    async with Gateway(psk=table, transmission=FAST) as gw, Node("node1", psk=cred) as node:
        await node.connect(gw.coaps_uri)
        reg = await gw.wait_for_registration("node1", timeout=10)
        await node.wait_registered(10)
        assert reg.psk_identity == "node1-id" and reg.address == node.address  # the DTLS session's socket
        assert "/0/0" not in reg.object_paths  # LwM2M 1.1 Core 6.2.1: /0 is not registered
        assert list((await gw.read("node1", "/3/0/17")).values()) == ["embServe Node"]
        # the node's own view: PSK mode, its identity; the server cannot read any of it
        assert node.objects.get("/0/0/2") == MODE_PSK and node.objects.get("/0/0/3") == b"node1-id"
        for path in ("/0/0/5", "/0/0", "/0"):
            with pytest.raises(GatewayRequestError, match="4.01 Unauthorized"):
                await gw.read("node1", path)
        assert gw.dtls.refused == 0 and gw.datagrams.refused == 0
        async with ReadingCollector(gw, "node1") as readings, Deployer(gw, cache_dir=tmp_path) as deployer:
            deployment = await deployer.deploy(temperature_service_json, "node1")
            first = await readings.wait(1, timeout=15)
        assert deployment.instance == 1000 and isinstance(first[0].value, float)

        # a NoSec Register for node1, and node2's identity registering as node1: both 4.03, node1 stays
        for rogue in (Node("node1"), Node("node1", psk=table.by_endpoint["node2"])):
            async with rogue:
                await rogue.connect(gw.coaps_uri if rogue.psk else gw.uri)
                await asyncio.wait_for(_refused(rogue), 10)
                assert "4.03 Forbidden" in rogue.client.last_error and "node1" in rogue.client.last_error
        # an Update of node1's registration over NoSec (what would move it to the sender's address): 4.03
        plain = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            answer = await plain.request(Message(code=Code.POST, uri=f"{gw.uri}/rd/{reg.registration_id}")).response
        finally:
            await plain.shutdown()
        assert answer.code == Code.FORBIDDEN and b"must come over DTLS" in answer.payload
        kept = gw.registrations["node1"]
        assert kept.registration_id == reg.registration_id and kept.psk_identity == "node1-id" and kept.address == reg.address
        assert list((await gw.read("node1", "/3/0/17")).values()) == ["embServe Node"]


async def _refused(node: Node) -> None:
    while "4.03" not in node.client.last_error:
        await asyncio.sleep(0.05)


async def test_wrong_key_never_registers():
    table = PskTable({"node1": parse_psk(f"node1-id:{KEY}")})
    async with Gateway(psk=table) as gw, Node("node1", psk=parse_psk(f"node1-id:ff{KEY[2:]}"), request_timeout=1.0) as node:
        await node.connect(gw.coaps_uri)
        await asyncio.wait_for(_failed_once(node), 10)
        assert "DTLS handshake did not complete" in node.client.last_error
        assert "node1" not in gw.registrations


async def _failed_once(node: Node) -> None:
    while not node.client.last_error:
        await asyncio.sleep(0.05)


async def test_nosec_node_reflects_its_mode():
    async with Gateway() as gw, Node("plain") as node:
        await node.connect(gw.uri)
        await gw.wait_for_registration("plain", timeout=10)
        assert node.objects.get("/0/0/2") == MODE_NOSEC and node.objects.get("/0/0/0") == gw.uri
        assert gw.registrations["plain"].psk_identity is None


def test_cli_gateway_psk_file_and_sim_psk(tmp_path):
    (tmp_path / "psk").write_text(f"# endpoint identity key\nsim1 sim1-id {KEY}\n")
    gateway = subprocess.Popen([sys.executable, "-m", "hil.cli", "gateway", "--port", "0", "--dtls-port", "0",
                                "--psk-file", str(tmp_path / "psk")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sim = None
    try:
        listening = json.loads(gateway.stdout.readline())
        assert listening["coaps_uri"].startswith("coaps://127.0.0.1:") and listening["secured_endpoints"] == 1
        sim = subprocess.Popen([sys.executable, "-m", "hil.cli", "sim", "--server", listening["coaps_uri"],
                                "--prefix", "sim", "--psk", f"sim1-id:{KEY}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        event = json.loads(gateway.stdout.readline())
        assert (event["event"], event["endpoint"], event["security"]) == ("registered", "sim1", "psk")
    finally:
        for proc in (sim, gateway):
            if proc is not None:
                proc.terminate()
                proc.communicate(timeout=10)
    bad = subprocess.run([sys.executable, "-m", "hil.cli", "sim", "--server", "coap://127.0.0.1:5683", "--psk", f"x:{KEY}"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "registers over coaps:// only" in bad.stderr
