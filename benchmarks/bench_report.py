"""Issue 17: what the HTML test report adds to a run of the HIL suite (4 tests on the simulator).

Two measures:

* the run as a user makes it: the shipped suite in a child pytest, with and
  without ``--html report.html --self-contained-html``, alternating, ``BENCH_ROUNDS``
  (default 3) of each; wall time and the CPU time of the child and everything
  it started. Most of a run is waiting on the device, so the wall-time
  difference is within the run-to-run spread; the CPU difference is the cost;
* the report's own work, timed alone in a fresh process on the session the
  last run recorded: importing matplotlib and rendering the four tests'
  sections (facts, step timings, readings plots as SVG), which is what the
  plugin does at each test's teardown.

    python -m benchmarks report
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RENDER = """
import sys, time
t0 = time.perf_counter()
import matplotlib
t1 = time.perf_counter()
from pathlib import Path
from hil.report import load_session
from hil.report.render import section
tests = load_session(Path(sys.argv[1]))
t2 = time.perf_counter()
for test in tests:
    section(test, Path(sys.argv[1]))
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {len(tests)} {sum(len(t.series) for t in tests)}")
"""


def run_suite(out: Path, html: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child and its children) of one run of the shipped suite."""
    args = [sys.executable, "-m", "pytest", "tests/hil", "-q", "-p", "no:cacheprovider", "--hil-log-dir", str(out / "logs")]
    if html:
        args += ["--html", str(out / "report.html"), "--self-contained-html"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"the HIL suite failed:\n{run.stdout[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for html in (False, True):
                out = Path(tmp) / f"{'html' if html else 'plain'}-{i}"
                results[html].append(run_suite(out, html))
        for html in (False, True):
            walls = [w for w, _ in results[html]]
            cpus = [c for _, c in results[html]]
            label = "with --html" if html else "without    "
            print(f"  4 tests {label}: wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}, "
                  f"max {max(walls):.2f}); CPU median {statistics.median(cpus):.2f} s")
        wall_delta = statistics.median(w for w, _ in results[True]) - statistics.median(w for w, _ in results[False])
        cpu_delta = statistics.median(c for _, c in results[True]) - statistics.median(c for _, c in results[False])
        print(f"  added by the HTML report: wall {wall_delta:+.2f} s, CPU {cpu_delta:+.2f} s (medians)")
        logs = Path(tmp) / f"html-{rounds - 1}" / "logs"
        timed = subprocess.run([sys.executable, "-c", RENDER, str(logs)], cwd=REPO, capture_output=True, text=True,
                               timeout=300, check=True).stdout.split()
        imp, load, render, tests, series = float(timed[0]), float(timed[1]), float(timed[2]), timed[3], timed[4]
        print(f"  the report's own work, alone: import matplotlib {imp * 1000:.0f} ms, read {tests} report.json "
              f"{load * 1000:.0f} ms, render {tests} sections ({series} plots) {render * 1000:.0f} ms; "
              f"total {(imp + load + render) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
