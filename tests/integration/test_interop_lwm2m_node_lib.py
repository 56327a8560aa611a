"""Interoperability with an independent LwM2M implementation: Telefonica's lwm2m-node-lib.

Both directions, over real UDP on loopback:

- our simulated node registers to the library's LwM2M server
  (tests/interop/lwm2m_server.js), which reads, writes, executes and observes;
- the library's LwM2M client (tests/interop/lwm2m_client.js) registers to our
  gateway, which reads, writes, executes and observes.

The scripts speak JSON lines (commands on stdin, events on stdout). What the
library does on the wire, and where it departs from the LwM2M/CoAP specs, is
written down in docs/interop.md; the assertions below pin those measured
facts for the pinned version (tests/interop/package.json).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Any

import cbor2
import pytest
from conftest import wait_until

from hil.device.node import Node
from hil.gateway import Gateway, GatewayRequestError, GatewayTimeout
from hil.lwm2m.model import Path

INTEROP = FsPath(__file__).resolve().parents[1] / "interop"
NODE_JS = shutil.which("node")
LIBRARY = INTEROP / "node_modules" / "lwm2m-node-lib"

pytestmark = [
    pytest.mark.skipif(NODE_JS is None, reason="Node.js (`node`) is not installed: run scripts/bootstrap.sh"),
    pytest.mark.skipif(
        not LIBRARY.is_dir(),
        reason=f"{LIBRARY} is missing: run scripts/bootstrap.sh (npm ci --prefix tests/interop)",
    ),
]

WAIT = 10.0  # bound for every wait; a healthy run needs milliseconds
TLV = "application/vnd.oma.lwm2m+tlv"
SENML_CBOR = "application/senml+cbor"


class Peer:
    """One script of tests/interop as a child process speaking JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: FsPath):
        self.process = process
        self.stderr = stderr
        self.seen: list[dict[str, Any]] = []  # every event, for error messages
        self._pending: list[dict[str, Any]] = []  # read but not taken by event()
        self._next_id = 0

    def send(self, **command: Any) -> int:
        self._next_id += 1
        command.setdefault("id", self._next_id)
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        return command["id"]

    async def event(self, matches: Callable[[dict[str, Any]], bool], what: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first event not taken yet that ``matches``; the error lists what came instead.

        Events that do not match stay for later calls: a de-registration may
        come before the result of the Execute that caused it.
        """
        for event in self._pending:
            if matches(event):
                self._pending.remove(event)
                return event
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise EOFError
                    event = json.loads(line)
                    self.seen.append(event)
                    if matches(event):
                        return event
                    self._pending.append(event)
        except (TimeoutError, EOFError) as exc:
            ended = "the script ended" if isinstance(exc, EOFError) else f"nothing within {timeout} s"
            raise AssertionError(
                f"waiting for {what}: {ended}; events seen: {self.seen[-8:]}; "
                f"stderr: {self.stderr.read_text(errors='replace')[-800:]}"
            ) from None

    async def kind(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        return await self.event(lambda e: e["event"] == kind, f"a {kind!r} event", timeout)

    async def call(self, timeout: float = WAIT, **command: Any) -> dict[str, Any]:
        """Send a command and return its result event."""
        cid = self.send(**command)
        return await self.event(lambda e: e["event"] == "result" and e["id"] == cid, f"the result of {command}", timeout)

    async def drain(self, timeout: float = 0.3) -> list[dict[str, Any]]:
        """Events not taken yet plus those printed within ``timeout`` (to check that something did not happen)."""
        events, self._pending = self._pending, []
        assert self.process.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            except TimeoutError:
                return events
            if not line:
                return events
            events.append(json.loads(line))
            self.seen.append(events[-1])


@asynccontextmanager
async def peer(tmp_path: FsPath, script: str, *args: str) -> AsyncIterator[Peer]:
    stderr = tmp_path / f"{script}.stderr"
    with stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            NODE_JS, str(INTEROP / script), *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=INTEROP,
        )
    try:
        yield Peer(process, stderr)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), WAIT)


def senml_values(text: str) -> dict[str, Any]:
    """Resolved name -> value of a SenML JSON pack (RFC 8428 base-name rules)."""
    values, base = {}, ""
    for record in json.loads(text):
        base = record.get("bn", base)
        name = base + record.get("n", "")
        for key in ("v", "vs", "vb", "vd", "vlo"):
            if key in record:
                values[name] = record[key]
    return values


# ---------------------------------------------------------------------------- our node, their server


@asynccontextmanager
async def node_on_lib_server(tmp_path: FsPath, endpoint: str, **node_args: Any) -> AsyncIterator[tuple[Node, Peer, dict]]:
    async with peer(tmp_path, "lwm2m_server.js", "0") as server:
        port = (await server.kind("listening"))["port"]
        async with Node(endpoint, **node_args) as node:
            await node.connect(f"coap://127.0.0.1:{port}")
            registration = await server.kind("registration")
            yield node, server, registration


async def test_node_registers_to_lib_server_as_lwm2m_1_1(tmp_path):
    async with node_on_lib_server(tmp_path, "interop-reg") as (node, server, registration):
        assert registration["endpoint"] == "interop-reg"
        assert registration["version"] == "1.1"
        assert registration["binding"] == "U"
        assert registration["lifetime"] == str(node.lifetime)
        links = registration["links"].split(",")
        assert links[0] == '</>;rt="oma.lwm2m";ct=112'  # root: the optional format the node prefers, SenML CBOR
        assert {"</1/0>", "</3/0>", "</4/0>", "</3303/0>"} <= set(links)
        await node.wait_registered(WAIT)
    # leaving the node de-registers it at the library's server
    assert (await server.kind("deregistration"))["endpoint"] == "interop-reg"


async def test_lib_server_reads_device_type_in_each_format(tmp_path):
    async with node_on_lib_server(tmp_path, "interop-read") as (_, server, _registration):
        # the library sends no Accept by default: the node answers its preferred format, SenML CBOR
        default = await server.call(op="read", endpoint="interop-read", path="/3/0/17")
        assert default["ok"], default
        assert default["response"]["contentFormat"] == SENML_CBOR
        # one record: {-2 (bn): "/3/0/17", 3 (vs): "embServe Node"}
        assert cbor2.loads(bytes.fromhex(default["response"]["payloadHex"])) == [{-2: "/3/0/17", 3: "embServe Node"}]

        tlv = await server.call(op="read", endpoint="interop-read", path="/3/0/17", accept=TLV)
        assert tlv["ok"], tlv
        assert tlv["response"]["contentFormat"] == TLV
        # Resource TLV: type 0b11, 8-bit id, 8-bit length -> 0xC8, id 17, length 13
        assert bytes.fromhex(tlv["response"]["payloadHex"]) == bytes([0xC8, 17, 13]) + b"embServe Node"

        text = await server.call(op="read", endpoint="interop-read", path="/3/0/17", accept="text/plain")
        assert text["ok"], text
        assert text["response"]["contentFormat"] == "text/plain"
        assert text["value"] == "embServe Node"

        senml = await server.call(op="read", endpoint="interop-read", path="/3/0/17", accept="application/senml+json")
        assert senml["ok"], senml
        assert senml["response"]["contentFormat"] == "application/senml+json"
        assert senml_values(senml["value"]) == {"/3/0/17": "embServe Node"}


async def test_lib_server_writes_lifetime_and_reads_it_back(tmp_path):
    async with node_on_lib_server(tmp_path, "interop-write") as (node, server, _):
        written = await server.call(op="write", endpoint="interop-write", path="/1/0/1", value="120", format="text/plain")
        assert written["ok"], written
        assert written["response"]["code"] == "2.04"
        # a new lifetime makes the node send an Update (with lt=120) to the server
        assert (await server.kind("update"))["endpoint"] == "interop-write"
        back = await server.call(op="read", endpoint="interop-write", path="/1/0/1", accept="text/plain")
        assert back["ok"], back
        assert back["value"] == "120"
        assert node.client is not None and node.client.lifetime == 120


async def test_lib_server_executes_reboot_and_node_registers_again(tmp_path):
    async with node_on_lib_server(tmp_path, "interop-reboot") as (node, server, _):
        assert node.boots == 1
        executed = await server.call(op="execute", endpoint="interop-reboot", path="/3/0/4")
        assert executed["ok"], executed
        assert executed["response"]["code"] == "2.04"
        assert (await server.kind("deregistration"))["endpoint"] == "interop-reboot"
        again = await server.kind("registration")
        assert again["endpoint"] == "interop-reboot" and again["version"] == "1.1"
        assert node.boots == 2
        # the rebooted node serves the new server-side registration
        read = await server.call(op="read", endpoint="interop-reboot", path="/3/0/17", accept="text/plain")
        assert read["value"] == "embServe Node"


async def test_lib_server_observes_temperature(tmp_path):
    # request_timeout short: after the first notification the node waits in vain for the
    # library to acknowledge it (docs/interop.md), and its De-register queues behind it
    async with node_on_lib_server(tmp_path, "interop-obs", request_timeout=2.0) as (node, server, _):
        assert node.client is not None and node.client.site is not None
        site = node.client.site
        observe = server.send(op="observe", endpoint="interop-obs", path="/3303/0/5700", accept="text/plain")
        await wait_until(lambda: len(site.observations) == 1, "the node to accept the observation")
        node.sensors["temperature"].set(30.5)
        result = await server.event(lambda e: e.get("id") == observe, "the library's first observed value")
        assert result["ok"], result
        # node-coap drops the answer to the Observe request itself (Observe option 0, see
        # docs/interop.md) but it did come, with the value then current ...
        assert result["response"]["code"] == "2.05"
        assert result["response"]["contentFormat"] == "text/plain"
        assert bytes.fromhex(result["response"]["payloadHex"]) == b"21.5"
        # ... and the first value the library hands out is the notification after set()
        assert result["value"] == "30.5"


# ---------------------------------------------------------------------------- their client, our gateway

CLIENT_OBJECTS = {
    "/1/0": {"0": "1", "1": "300"},
    "/3/0": {"0": "Telefonica", "17": "lwm2m-node-lib client"},
    "/3303/0": {"5700": "21.5", "5701": "Cel"},
}


@asynccontextmanager
async def lib_client_on_gateway(tmp_path: FsPath, endpoint: str, version: str = "1.0") -> AsyncIterator[tuple[Gateway, Peer]]:
    async with Gateway() as gw:
        args = ("127.0.0.1", str(gw.port), endpoint, json.dumps(CLIENT_OBJECTS), version)
        async with peer(tmp_path, "lwm2m_client.js", *args) as client:
            await gw.wait_for_registration(endpoint, WAIT)
            await client.kind("registered")
            yield gw, client


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_lib_client_registers_to_gateway(tmp_path, version):
    async with lib_client_on_gateway(tmp_path, "libclient", version) as (gw, _):
        reg = gw.registration("libclient")
        # the library sends no Content-Format on Register and no ct= link attribute
        assert reg.lwm2m_version == version
        assert reg.binding == "U"
        assert reg.lifetime == 300
        assert [link.path for link in reg.object_links] == list(CLIENT_OBJECTS)
        assert all(not link.attrs for link in reg.object_links)
        assert reg.root_path == ""


async def test_gateway_reads_lib_client(tmp_path):
    async with lib_client_on_gateway(tmp_path, "libclient") as (gw, client):
        value = await gw.read("libclient", "/3/0/17", fmt="text")
        assert value == {Path(3, 0, 17): "lwm2m-node-lib client"}
        assert (await client.kind("read"))["path"] == "/3/0/17"
        # the library answers plain text with no Content-Format at all; the gateway reads a
        # payload without one at a resource path as text
        raw = await gw.read_raw("libclient", "/3303/0/5700")
        assert raw.content_format is None and raw.payload == b"21.5"
        assert await gw.read("libclient", "/3303/0/5700", fmt="text") == {Path(3303, 0, 5700): 21.5}
        # it ignores Accept among the formats it knows: octet-stream asked, text given
        opaque = await gw.read_raw("libclient", "/3/0/0", fmt="opaque")
        assert opaque.content_format is None and opaque.payload == b"Telefonica"
        # instances and objects cannot be read from it
        with pytest.raises(GatewayRequestError) as instance:
            await gw.read_raw("libclient", "/3/0")
        assert instance.value.code == "4.04 Not Found"
        with pytest.raises(GatewayRequestError) as obj:
            await gw.read_raw("libclient", "/3")
        assert obj.value.code == "4.00 Bad Request"


async def test_lib_client_drops_requests_in_formats_it_does_not_know(tmp_path):
    # Accept 11542 (TLV): node-coap cannot parse the option and drops the request, unanswered
    async with lib_client_on_gateway(tmp_path, "libclient") as (gw, client):
        with pytest.raises(GatewayTimeout):
            await gw.read("libclient", "/3/0/17", fmt="tlv", timeout=1.0)
        assert [e for e in await client.drain() if e["event"] == "read"] == []


async def test_gateway_writes_lib_client(tmp_path):
    async with lib_client_on_gateway(tmp_path, "libclient") as (gw, client):
        await gw.write("libclient", "/1/0/1", 120, fmt="text")
        written = await client.kind("write")
        assert written == {"event": "write", "path": "/1/0/1", "value": "120"}
        assert await gw.read("libclient", "/1/0/1", fmt="text") == {Path(1, 0, 1): 120}


async def test_gateway_executes_on_lib_client(tmp_path):
    async with lib_client_on_gateway(tmp_path, "libclient") as (gw, client):
        await gw.execute("libclient", "/3/0/4")
        assert await client.kind("execute") == {"event": "execute", "path": "/3/0/4", "args": ""}
        await gw.execute("libclient", "/3/0/4", "5='soon'")
        assert await client.kind("execute") == {"event": "execute", "path": "/3/0/4", "args": "5='soon'"}
        with pytest.raises(GatewayRequestError) as missing:
            await gw.execute("libclient", "/5/0/2")  # no such instance on the client
        assert missing.value.code == "4.04 Not Found"


async def test_gateway_observes_lib_client(tmp_path):
    async with lib_client_on_gateway(tmp_path, "libclient") as (gw, client):
        async with gw.observe("libclient", "/3303/0/5700") as obs:
            first = await obs.next(WAIT)
            assert first.value() == 21.5 and first.content_format is None
            client.send(op="set", path="/3303/0/5700", value="22.5")
            second = await obs.next(WAIT)
            assert second.value() == 22.5
            client.send(op="set", path="/3303/0/5700", value="23.5")
            third = await obs.next(WAIT)
            assert third.value() == 23.5
            assert first.sequence is not None and first.sequence < second.sequence < third.sequence
        # the gateway cancels passively (a Reset to the next notification); the client carries on
        assert (await client.call(op="set", path="/3303/0/5700", value="24.5"))["ok"]
        assert await gw.read("libclient", "/3303/0/5700", fmt="text") == {Path(3303, 0, 5700): 24.5}


async def test_lib_client_updates_from_a_new_port_and_deregisters(tmp_path):
    async with lib_client_on_gateway(tmp_path, "libclient") as (gw, client):
        first = gw.registration("libclient")
        async with gw.subscribe() as events:
            assert (await client.call(op="update"))["ok"]
            updated = await events.get(WAIT)
            assert updated.kind == "updated" and updated.endpoint == "libclient"
            reg = gw.registration("libclient")
            assert reg.registration_id == first.registration_id
            # the library sends each Update from a fresh socket and listens there from then on;
            # the gateway follows the source address of the latest Update
            assert reg.address != first.address
            assert await gw.read("libclient", "/3/0/17", fmt="text") == {Path(3, 0, 17): "lwm2m-node-lib client"}
            assert (await client.call(op="deregister"))["ok"]
            gone = await events.get(WAIT)
            assert gone.kind == "deregistered" and gone.endpoint == "libclient"
        assert "libclient" not in gw.registrations
