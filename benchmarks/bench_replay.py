"""Issue 14: replay of the sample bug on the simulator, from start to the recurred fault.

Records a bundle of the sample bug (services/faulty_sensor with the offset
that makes its loop() fault) by running hil/suites/sample_bug.py in a child
pytest, then replays it in this process: boot, bootstrap, sensor, deploy
straight through the gateway, the input, until the fault is seen again.

    python -m benchmarks replay          # 5 replays
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hil.replay import prepare, run

REPO = Path(__file__).resolve().parents[1]


async def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pytest", "tests/hil/test_sample_bug.py", "-q", "-p", "no:cacheprovider",
            "--hil-log-dir", str(logs), cwd=REPO, stdout=asyncio.subprocess.DEVNULL)
        await asyncio.wait_for(child.wait(), 300)
        bundle = next(logs.glob("*/bundle"))
        times, to_fault = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            plan = prepare(bundle)
            result = await run(plan, Path(tmp) / f"replay{i}", announce=lambda line: None)
            total = time.perf_counter() - t0
            if not result.recurred:
                raise RuntimeError(f"replay {i} did not reproduce the fault:\n{result.summary()}")
            fault = next(f for f in result.seen if f.signature() == plan.bundle.failure.signature())
            to_fault.append(fault.time - (time.time() - total))
            times.append(total)
    print(f"replay of the sample bug on the simulator, {rounds} runs (median / max):")
    print(f"  start -> fault seen again   {statistics.median(to_fault):6.2f} / {max(to_fault):6.2f} s")
    print(f"  whole replay (incl. stop)   {statistics.median(times):6.2f} / {max(times):6.2f} s")
