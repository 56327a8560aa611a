"""The live fleet page: served by the gateway's REST API and by ``embserve-hil fleet --http``, watched in Chromium.

A fleet of 100 simulated nodes runs in the command line's own process, as a
user starts it; the page is opened in a real headless Chromium, which must
show every node and counters that move as readings arrive. A screenshot of
it lands in this test's log folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
from browser_helpers import Chromium, chromium_path
from conftest import WAIT
from northbound_helpers import running_node

from hil.gateway.rest import RestApi

NODES = 100
TOTALS = "Object.fromEntries(Array.from(document.querySelectorAll('.totals .n')).map(el => [el.id.slice(2), el.textContent]))"


@contextlib.asynccontextmanager
async def fleet_command(tmp_path: Path, broker, *args: str):
    """``embserve-hil fleet`` in a child process; yields what it printed before its first summary, by API."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(textwrap.dedent(f"""\
        nodes:
          page{{1..{NODES}}}:
            sensors:
              temperature: 'wave:base=21,amplitude=4,period=30'
        """))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cli", "fleet", str(fleet), "--mqtt", f"{broker.host}:{broker.port}",
        "--every", "1", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        apis: dict[str, str] = {}
        seen: list[str] = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if not line:
                _, err = await proc.communicate()
                raise AssertionError(f"embserve-hil fleet ended early: {''.join(seen)}{err.decode()[-3000:]}")
            seen.append(line)
            if line.startswith("fleet "):
                break
            api, _, where = line.rstrip("\n").partition(" ")
            apis[api] = where.strip()
        yield apis
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert out.decode().splitlines()[-1] == "fleet stopped"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/bootstrap.sh installs it)")
async def test_fleet_page_shows_100_nodes_and_counts_their_readings(tmp_path, broker, hil_log_dir):
    async with fleet_command(tmp_path, broker, "--http", "0") as apis:
        assert apis["page"] == apis["REST"].removesuffix("/api") + "/fleet"
        assert apis["http"].startswith("http://127.0.0.1:") and apis["http"].endswith("/fleet")
        async with Chromium(hil_log_dir) as browser:
            page = await browser.open(apis["http"])
            await page.wait_for(f"document.querySelectorAll('#nodes tbody tr').length === {NODES}",
                                f"{NODES} rows", timeout=30)
            await page.wait_for(f"document.getElementById('t-registered').textContent === '{NODES}'",
                                f"{NODES} nodes registered", timeout=30)
            await page.wait_for(f"document.getElementById('t-reporting').textContent === '{NODES}'",
                                f"{NODES} nodes reporting", timeout=30)
            cpu_before = await browser.cpu_seconds()
            first, stats_before = await page.evaluate(TOTALS), await page.evaluate("window.fleetStats")
            await asyncio.sleep(3)
            second, stats = await page.evaluate(TOTALS), await page.evaluate("window.fleetStats")
            cpu_after = await browser.cpu_seconds()
            names = await page.evaluate(
                "Array.from(document.querySelectorAll('#nodes tbody tr')).map(tr => tr.dataset.endpoint)")
            values = await page.evaluate(
                "Array.from(document.querySelectorAll('#nodes tbody tr td:nth-child(5)')).map(td => td.textContent)")
            link = await page.evaluate("document.getElementById('link').textContent")
            await page.screenshot(hil_log_dir / "fleet-page.png")
    assert names == [f"page{i}" for i in range(1, NODES + 1)]  # in natural order
    assert link == "live"
    assert first["nodes"] == second["nodes"] == str(NODES) and second["deployed"] == "0" and second["errors"] == "0"
    assert int(second["readings"]) > int(first["readings"]), (first, second)
    assert float(second["rate"]) > 0, second
    assert all(v not in ("", "–") and 16.0 <= float(v) <= 26.0 for v in values), values
    assert stats["batches"] > stats_before["batches"] and stats["applied"] == stats["batches"], stats
    # What the page cost the browser: reported, not asserted (docs/benchmarks.md has the 1,000-node figures).
    print(f"fleet page, {NODES} nodes: browser CPU {(cpu_after - cpu_before) / 3 * 100:.1f} % of one core over 3 s,"
          f" {stats['batches'] - stats_before['batches']} batches, apply max {stats['applyMsMax']:.1f} ms")


async def test_rest_api_serves_the_fleet_page_and_its_batches(gateway):
    async with RestApi(gateway) as api, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
        async with running_node(gateway, "fp1", lifetime=120), running_node(gateway, "fp2", lifetime=120):
            async with http.get(f"{api.url}/fleet") as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert '<script src="fleet/fleet.js">' in await page.text()
            for asset, kind in (("fleet.js", "application/javascript"), ("fleet.css", "text/css")):
                async with http.get(f"{api.url}/fleet/{asset}") as response:
                    assert response.status == 200 and response.content_type == kind
            async with http.get(f"{api.url}/fleet/nothing.js") as missing:
                assert missing.status == 404
            api.fleet_view.error("fp2", "deploying x failed: no such service")
            async with http.get(f"{api.url}/api/fleet") as snapshot:
                whole = await snapshot.json()
            rows = {row[0]: dict(zip(whole["columns"], row)) for row in whole["nodes"]}
            assert whole["full"] and {"fp1", "fp2"} <= set(rows)
            assert rows["fp1"]["state"] == "registered" and rows["fp2"]["errors"] == 1
            assert whole["totals"]["registered"] >= 2 and whole["totals"]["errors"] == 1
            assert whole["errors"][-1][1:] == ["fp2", "deploying x failed: no such service"]

            async with http.get(f"{api.url}/api/fleet/events?interval=0.1") as stream:
                assert stream.headers["Content-Type"] == "text/event-stream"
                first = await next_event(stream)
                again = await next_event(stream)
            assert first["full"] and {"fp1", "fp2"} <= {row[0] for row in first["nodes"]}
            assert not again["full"] and again["seq"] == first["seq"] + 1
            assert again["errors"] == []  # only what is new since the batch before
            async with http.get(f"{api.url}/api/fleet/events?interval=nope") as bad:
                assert bad.status == 400 and "interval='nope'" in await bad.text()


async def next_event(stream: aiohttp.ClientResponse) -> dict:
    data = None
    while True:
        line = (await asyncio.wait_for(stream.content.readline(), WAIT)).decode().rstrip("\n")
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return data
