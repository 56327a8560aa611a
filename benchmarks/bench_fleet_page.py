"""Issue 17: the live fleet page with 1,000 nodes each reporting every second, in a real headless Chromium.

A fleet of 1,000 simulated nodes (temperature on a waveform, sampled every
device second on a real-time clock, so ~1,000 readings/s reach the gateway
through the SDF bridge's observations) runs in this process with its own
mosquitto; the page is opened from the gateway's REST API. After every row
is shown and a warm-up, for ``BENCH_SECONDS`` (default 20) it measures:

* the browser's CPU: every process of the browser (``SystemInfo.getProcessInfo``)
  and how long the page's main thread was busy (``Performance.getMetrics``
  TaskDuration, which on a loaded machine includes time waiting for a core);
* whether the page keeps up: FLEET batches received and applied, time to
  apply one (mean, max), and the lag from the gateway writing a batch to the
  page showing it (max);
* what the gateway saw: readings per second (the page's own counter), and
  this process's CPU (fleet, gateway, bridge, page server).

    python -m benchmarks fleet_page
    BENCH_NODES=200 BENCH_SECONDS=10 python -m benchmarks fleet_page
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from hil.fleet import Fleet, parse_fleet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))  # the tests' browser driver
from browser_helpers import Chromium  # noqa: E402

async def main() -> None:
    count = int(os.environ.get("BENCH_NODES", "1000"))
    seconds = float(os.environ.get("BENCH_SECONDS", "20"))
    specs = parse_fleet({"nodes": {f"page{{1..{count}}}": {"sensors": {"temperature": "wave:base=21,amplitude=4,period=30"}}}})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        async with Fleet(specs, log_dir=tmp) as fleet:
            await fleet.wait_registered(120)
            print(f"  {count} nodes registered after {time.perf_counter() - t0:.1f} s")
            async with Chromium(Path(tmp) / "browser") as browser:
                page = await browser.open(fleet.endpoints()["page"])
                await page.wait_for(f"document.querySelectorAll('#nodes tbody tr').length === {count}",
                                    f"{count} rows", timeout=120)
                await page.wait_for(f"document.getElementById('t-reporting').textContent === '{count}'",
                                    f"{count} nodes reporting", timeout=120)
                await asyncio.sleep(5)  # warm-up: the rate window fills
                await page.evaluate("Object.assign(window.fleetStats, {applyMsMax: 0, lagMsMax: 0})")
                before = (await page.evaluate("window.fleetStats"), await page.metrics(),
                          await browser.cpu_seconds(), time.process_time(), time.perf_counter())
                await asyncio.sleep(seconds)
                after = (await page.evaluate("window.fleetStats"), await page.metrics(),
                         await browser.cpu_seconds(), time.process_time(), time.perf_counter())
                await page.screenshot(Path(tmp) / "fleet-page.png")
    (s0, m0, b0, p0, w0), (s1, m1, b1, p1, w1) = before, after
    wall = w1 - w0
    batches, applied = s1["batches"] - s0["batches"], s1["applied"] - s0["applied"]
    frames = s1["frames"] - s0["frames"]
    apply_mean = (s1["applyMs"] - s0["applyMs"]) / max(frames, 1)
    print(f"  over {wall:.1f} s: gateway {s1['totals']['rate']:.0f} readings/s (the page's counter), "
          f"{(s1['totals']['readings'] - s0['totals']['readings']) / wall:.0f}/s by its total")
    print(f"  page: {batches} batches received, {applied} applied in {frames} frames; apply mean {apply_mean:.1f} ms,"
          f" max {s1['applyMsMax']:.1f} ms; lag gateway -> page max {s1['lagMsMax']:.0f} ms;"
          f" {s1['rowUpdates'] - s0['rowUpdates']} cell updates")
    print(f"  browser CPU, all processes: {(b1 - b0) / wall * 100:.1f} % of one core; page main thread busy"
          f" {(m1['TaskDuration'] - m0['TaskDuration']) / wall * 100:.1f} % of the time")
    print(f"  this process (fleet, gateway, bridge, page server): {(p1 - p0) / wall * 100:.0f} % of one core")


if __name__ == "__main__":
    asyncio.run(main())
