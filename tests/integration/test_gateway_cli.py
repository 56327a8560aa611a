"""``embserve-hil gateway`` as a real process: JSON lines on stdout, clean stop on SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap import Message
from aiocoap.numbers.codes import Code

WAIT = 10.0
REPO = Path(__file__).resolve().parents[2]


async def _line(proc: asyncio.subprocess.Process, stderr_log: Path, what: str) -> dict[str, Any]:
    try:
        raw = await asyncio.wait_for(proc.stdout.readline(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {what} line within {WAIT} s; stderr:\n{stderr_log.read_text()}") from None
    assert raw, f"stdout closed before the {what} line (exit code {proc.returncode}); stderr:\n{stderr_log.read_text()}"
    return json.loads(raw)


async def test_cli_prints_a_json_line_per_registration_event(tmp_path: Path):
    stderr_log = tmp_path / "gateway.stderr"
    with stderr_log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hil.cli", "-v", "gateway", "--port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=REPO,
        )  # fmt: skip
    try:
        listening = await _line(proc, stderr_log, "listening")
        assert listening["event"] == "listening" and listening["host"] == "127.0.0.1"
        port = listening["port"]
        assert port > 0 and listening["uri"] == f"coap://127.0.0.1:{port}"

        client = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            register = Message(
                code=Code.POST,
                uri=f"coap://127.0.0.1:{port}/rd?ep=cli-node&lt=90&lwm2m=1.1&b=U",
                payload=b'</>;rt="oma.lwm2m",</1/0>,</3/0>,</9>,</3303/0>',
                content_format=40,
            )
            response = await asyncio.wait_for(client.request(register).response, WAIT)
            assert response.code == Code.CREATED
            location = "/".join(response.opt.location_path)
            registered = await _line(proc, stderr_log, "registered")
            deregister = Message(code=Code.DELETE, uri=f"coap://127.0.0.1:{port}/{location}")
            assert (await asyncio.wait_for(client.request(deregister).response, WAIT)).code == Code.DELETED
            deregistered = await _line(proc, stderr_log, "deregistered")
        finally:
            await client.shutdown()

        assert registered["event"] == "registered"
        assert registered["endpoint"] == "cli-node"
        assert registered["address"].startswith("127.0.0.1:")
        assert registered["lifetime"] == 90 and registered["lwm2m"] == "1.1" and registered["binding"] == "U"
        assert registered["objects"] == ["/1/0", "/3/0", "/9", "/3303/0"]
        assert location == f"rd/{registered['registration_id']}"
        assert (deregistered["event"], deregistered["endpoint"]) == ("deregistered", "cli-node")

        proc.send_signal(signal.SIGINT)
        assert await _line(proc, stderr_log, "stopped") == {"event": "stopped"}
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        assert "registered cli-node" in stderr_log.read_text()  # INFO log of the event
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
