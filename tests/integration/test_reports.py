"""Reports of a HIL run: pytest-html's report with readings plots, JUnit properties, ``embserve-hil report``.

The shipped HIL suite (5 tests and the sample bug) runs once on the simulator in a child pytest
with ``--html`` and ``--junitxml``; its report is opened in a real headless
Chromium and its plots counted there, its JUnit XML parsed back, and the
session's log folder turned into a report again by the command line.
Screenshots of what the browser showed land in this test's log folder.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_helpers import Chromium, chromium_path
from conftest import REPO, run_child_pytest

from hil.report import RecordedTest, load_session

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/bootstrap.sh installs it)")

PLOTTED_POINTS = """
Array.from(document.querySelectorAll('.hil-test')).map(section => ({
  nodeid: section.dataset.nodeid,
  plots: Array.from(section.querySelectorAll('figure.hil-plot')).map(figure => {
    const svg = figure.querySelector('svg');
    const box = svg.getBoundingClientRect();
    const markers = Array.from(svg.querySelectorAll('g[id^="readings-"] use'));
    return {
      endpoint: figure.dataset.endpoint, path: figure.dataset.path,
      width: box.width, height: box.height,
      points: markers.length,
      drawn: markers.filter(m => m.getBBox().width > 0).length,
    };
  }),
  steps: Array.from(section.querySelectorAll('.hil-steps th')).map(th => th.textContent),
  links: Array.from(section.querySelectorAll('.hil-facts a')).map(a => a.href),
}))
"""


@dataclass
class Session:
    root: Path
    output: str

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def recorded(self) -> dict[str, RecordedTest]:
        return {t.nodeid: t for t in load_session(self.logs)}


@pytest.fixture(scope="module")
def hil_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("hil-session")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/hil", "-p", "no:cacheprovider", "--hil-log-dir", str(root / "logs"),
         "--html", str(root / "report.html"), "--self-contained-html", "--junitxml", str(root / "junit.xml")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, f"the HIL suite failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    return Session(root, run.stdout)


def expected_points(test: RecordedTest) -> list[tuple[str, str, int]]:
    return sorted((s.endpoint, s.path, len(s.points)) for s in test.series)


def check_plots(shown: list[dict], recorded: dict[str, RecordedTest]) -> None:
    """Every recorded test has its section, and each plot shows every one of its readings."""
    assert sorted(s["nodeid"] for s in shown) == sorted(recorded), shown
    for section in shown:
        test = recorded[section["nodeid"]]
        assert test.readings > 0, f"{test.nodeid} recorded no readings"
        plots = section["plots"]
        assert sorted((p["endpoint"], p["path"], p["points"]) for p in plots) == expected_points(test), section
        for p in plots:
            assert p["width"] > 200 and p["height"] > 80, f"{test.nodeid}: plot not rendered: {p}"
            assert p["drawn"] == p["points"], f"{test.nodeid}: markers without a box: {p}"
        for step in ("resolve ms", "create ms", "write ms", "install ms", "activate ms", "first reading ms"):
            assert step in section["steps"], section["steps"]


async def test_html_report_plots_every_hil_test_in_chromium(hil_session: Session, hil_log_dir: Path):
    report = hil_session.root / "report.html"
    assert not (hil_session.root / "assets").exists(), "pytest-html wrote its assets beside a self-contained report"
    recorded = hil_session.recorded()
    assert len(recorded) == 6
    async with Chromium(hil_log_dir) as browser:
        page = await browser.open(report.as_uri() + "?collapsed=none")  # pytest-html folds passed tests by default
        await page.wait_for("document.querySelectorAll('.hil-test').length === 6", "the six HIL test sections")
        shown = await page.evaluate(PLOTTED_POINTS)
        metrics_plots = await page.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('.hil-test')).map(section =>"
            " [section.dataset.nodeid, section.parentElement.querySelectorAll('.hil-metrics figure svg').length]))")
        await page.screenshot(hil_log_dir / "html-report.png")
    check_plots(shown, recorded)
    # The test that records the service's cost (issue 21) shows its execution metrics' plots too.
    cost = [nodeid for nodeid in metrics_plots if nodeid.endswith("::test_service_cost_is_recorded")]
    assert cost and metrics_plots[cost[0]] >= 2, metrics_plots
    for section in shown:
        test = recorded[section["nodeid"]]
        log_link = next(href for href in section["links"] if href.startswith("file://"))
        assert Path(log_link.removeprefix("file://")).resolve() == Path(test.log_dir).resolve(), section["links"]


async def test_report_command_rebuilds_the_session_page(hil_session: Session, hil_log_dir: Path):
    out = hil_session.root / "rebuilt" / "session.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.cli", "report", str(hil_session.logs), "-o", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == f"{out}: 6 tests"
    recorded = hil_session.recorded()
    async with Chromium(hil_log_dir) as browser:
        page = await browser.open(out.as_uri())
        summary = await page.evaluate(
            "Array.from(document.querySelectorAll('table.hil-summary tr')).slice(1)"
            ".map(tr => Array.from(tr.cells).map(td => td.textContent))")
        shown = await page.evaluate(PLOTTED_POINTS)
        await page.screenshot(hil_log_dir / "session-report.png")
    assert sorted(row[0] for row in summary) == sorted(recorded)
    for row in summary:
        test = recorded[row[0]]
        # the sample bug is the suite's strict xfail: it fails as it should
        expected = "xfailed" if "test_sample_bug" in row[0] else "passed"
        assert row[1] == expected and row[3:6] == ["sim", "sim", str(test.readings)], row
        assert float(row[6]) == test.deploy_ms
    check_plots(shown, recorded)


def test_report_command_refuses_a_folder_without_reports(tmp_path: Path):
    run = subprocess.run([sys.executable, "-m", "hil.cli", "report", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 2
    assert f"embserve-hil report: {tmp_path}: no report.json in it or below" in run.stderr
    assert not (tmp_path / "report.html").exists()


def test_junit_xml_carries_each_hil_test_s_properties(hil_session: Session):
    recorded = {nodeid.split("::")[-1]: test for nodeid, test in hil_session.recorded().items()}
    cases = ET.parse(hil_session.root / "junit.xml").getroot().iter("testcase")
    seen = {}
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        seen[case.get("name")] = props
    assert sorted(seen) == sorted(recorded)
    for name, props in seen.items():
        test = recorded[name]
        standard = ["target", "board", "firmware_sha256", "service_digest", "readings", "deploy_ms"]
        assert [p for p in props if not p.startswith("cost.")] == standard, list(props)
        # the cost test (issue 21) records its cost.* summary too; no other test has any
        assert any(p.startswith("cost.") for p in props) == name.endswith("test_service_cost_is_recorded"), list(props)
        assert props["target"] == "sim" and props["board"] == "sim"
        assert props["firmware_sha256"] == ""  # the simulator runs no firmware file
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", props["service_digest"]), props
        assert int(props["readings"]) == test.readings > 0
        assert float(props["deploy_ms"]) == test.deploy_ms > 0


def test_long_waits_are_told_between_pytest_s_lines(hil_session: Session):
    lines = hil_session.output.splitlines()
    waits = [line for line in lines if line.startswith("embserve-hil: waiting for")]
    assert waits and all(re.fullmatch(r"embserve-hil: waiting for node1 /3303/0/5700: \d+ (more )?readings"
                                      r" \(\d+ s of \d+ s\)", w) for w in waits), waits
    results = [line for line in lines if line.startswith("tests/hil/test_temperature_sensor.py ")]
    # pytest's line is written again after each of ours: the five results are all there, none on our lines
    assert "".join(re.sub(r"\s+\[\s*\d+%\]$", "", line).split(" ", 1)[1] for line in results) == ".....", lines


WAITING_TEST = """
import asyncio
from hil.progress import waiting

async def test_slow():
    with waiting("the kettle", timeout=9):
        await asyncio.sleep(2.7)

def test_quick():
    pass
"""


@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "verbose"])
async def test_progress_lines_keep_pytest_s_output_whole(tmp_path: Path, verbosity: list[str]):
    (tmp_path / "test_waiting.py").write_text(WAITING_TEST)
    code, out = await run_child_pytest([str(tmp_path / "test_waiting.py"), "-p", "no:cacheprovider",
                                        "-o", "asyncio_mode=auto", "--rootdir", str(tmp_path), *verbosity], timeout=120)
    assert code == 0, out
    lines = out.splitlines()
    ours = [i for i, line in enumerate(lines) if line.startswith("embserve-hil: waiting for the kettle (")]
    assert len(ours) == 1, out  # announced after 2 s, once; the next line would come 5 s later
    after = lines[ours[0] + 1]
    if verbosity:
        assert re.search(r"test_waiting\.py::test_slow PASSED\s+\[ 50%\]$", after), out
        assert re.search(r"test_waiting\.py::test_quick PASSED\s+\[100%\]$", lines[ours[0] + 2]), out
    else:  # the file's line again, then both results (a long path may wrap them onto another line)
        assert re.search(r"test_waiting\.py \.", after), out
        results = []
        for line in lines[ours[0] + 1:]:
            if line.startswith("="):
                break
            results.append(re.sub(r"\s*\[\s*\d+%\]$", "", line.split("test_waiting.py ", 1)[-1]))
        assert "".join(results).strip() == "..", out
