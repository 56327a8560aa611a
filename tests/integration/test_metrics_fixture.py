"""The ``metrics`` fixture and ``--hil-metrics``, as a user's tests meet them (child pytest, simulator).

A user's test bounds a service's cost; the same test fails for a
deliberately heavier version of the service (more work per period), and the
failure shows the count. Every test with metrics leaves metrics.json and
metrics.html in its log directory; on QEMU, which records no metrics, a test
taking the fixture is skipped before a node boots.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, run_child_pytest

from hil.metrics import read_metrics_json

pytestmark = [pytest.mark.sim]

METERED = REPO / "tests" / "data" / "services" / "metered"
BOUND = 100  # instructions per period; the metered service's period is 25 (tests/unit/test_service_metering.py)

USER_TESTS = '''
import asyncio
from pathlib import Path

import pytest

from hil.faredge import oci
from hil.sdk import build_service

BOUND = {bound}
SOURCES = Path({sources!r})


@pytest.fixture(scope="session")
def metered(registry, tmp_path_factory):
    refs = {{}}
    for version in ("light", "heavy"):
        ref = f"{{registry.address}}/acme/metered:{{version}}"
        asyncio.run(oci.push_artifact(build_service(SOURCES / version, tmp_path_factory.mktemp(version)), ref))
        refs[version] = ref
    return refs


@pytest.mark.hil
@pytest.mark.parametrize("version", ["light", "heavy"])
async def test_the_service_stays_within_its_budget(metrics, deployer, node, metered, version):
    await deployer.deploy(metered[version], node.endpoint)
    await node.sleep_device(3.5)  # periods of 1 s
    m = await metrics.collect(node)
    assert m.sdk_calls("metered")["output"] >= 3
    assert m.instructions_per_period("metered") < BOUND


@pytest.mark.hil
async def test_without_the_fixture(deployer, node, metered):
    await deployer.deploy(metered["light"], node.endpoint)
    await node.sleep_device(2.5)
'''


def write_user_tests(root: Path) -> Path:
    sources = root / "services"
    shutil.copytree(METERED, sources / "light")
    heavy = sources / "heavy"
    shutil.copytree(METERED, heavy)
    code = (heavy / "service.c").read_text()
    (heavy / "service.c").write_text(code.replace("#define EXTRA_ROUNDS 0\n", "#define EXTRA_ROUNDS 100\n"))
    (heavy / "service.toml").write_text((heavy / "service.toml").read_text().replace("version = 1", "version = 2"))
    tests = root / "test_budget.py"
    tests.write_text(USER_TESTS.format(bound=BOUND, sources=str(sources)))
    return tests


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """test name -> (passed/failed/skipped, message), from the JUnit XML."""
    out = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        result = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        out[case.get("name")] = ("passed", "") if result is None else (result.tag, result.get("message", ""))
    return out


async def test_a_cost_bound_catches_the_heavier_version_and_every_test_leaves_its_metrics(tmp_path: Path) -> None:
    tests = write_user_tests(tmp_path)
    logs, report = tmp_path / "logs", tmp_path / "report.xml"
    code, out = await run_child_pytest(
        [str(tests), "-p", "no:cacheprovider", "-q", "--target", "sim", "--hil-metrics", "--hil-log-dir", str(logs),
         f"--junitxml={report}", "--rootdir", str(tmp_path)], timeout=180)
    assert code == 1, out[-4000:]
    results = outcomes(report)
    assert results["test_the_service_stays_within_its_budget[light]"] == ("passed", ""), out[-4000:]
    kind, message = results["test_the_service_stays_within_its_budget[heavy]"]
    assert kind == "failure" and re.search(rf"assert \d{{3,}} < {BOUND}", message), (kind, message)
    assert results["test_without_the_fixture"] == ("passed", ""), out[-4000:]

    # Each test's log directory: metrics.json (read back) and metrics.html with its plots.
    dirs = {d.name.split("-", 1)[1]: d for d in logs.iterdir() if d.is_dir() and d.name.startswith("test_budget-")}
    assert len(dirs) == 3, sorted(dirs)
    for name, folder in dirs.items():
        metrics = read_metrics_json(folder / "metrics.json")["node1"]
        assert metrics.source == "simulator"
        cost = metrics.service("metered")
        per_period = cost.instructions_per_period()
        assert (per_period < BOUND) == ("heavy" not in name), (name, per_period)
        assert cost.calls["output"] >= 2
        page = (folder / "metrics.html").read_text()
        assert page.count("<svg") == 2 and "instructions per loop() period" in page, name
    assert "embServe execution metrics" in out and "metered: 25 instructions per period (most)" in out, out[-3000:]


async def test_on_a_target_without_metrics_the_fixture_skips_before_a_node_boots(tmp_path: Path) -> None:
    tests = write_user_tests(tmp_path)
    logs = tmp_path / "logs"
    code, out = await run_child_pytest(
        [str(tests), "-p", "no:cacheprovider", "-q", "-rs", "--target", "qemu", "-k", "light",
         "--hil-log-dir", str(logs), "--rootdir", str(tmp_path)], timeout=120)
    assert code == 0, out[-4000:]
    assert re.search(r"SKIPPED \[1\] .*the qemu target records no execution metrics", out), out[-4000:]
    assert not list(logs.rglob("node1.console.log")), "a node was brought up for a test that was skipped"
