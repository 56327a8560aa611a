"""Bundles end to end: the sample bug's failing run leaves one, tshark reads its capture,
``replay`` reproduces it on the simulator, QEMU and Renode, and GDB attaches to replays.

One child pytest run of the shipped sample bug (and of a passing test) makes the bundles
the tests here read; every replay starts real devices (simulated node, QEMU, Renode).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_child_pytest, skip_without_qemu_tools
from hil.bundle import load_bundle
from hil.replay import ReplayError, prepare, run

SAMPLE = "tests/hil/test_sample_bug.py"
PASSING = "tests/hil/test_temperature_sensor.py::test_deploy_reports_readings"
FAULT_LINE = 47  # services/faulty_sensor/service.c: histogram[bucket]++


def _bundle_dir(log_dir: Path, test_name: str) -> Path:
    found = [p for p in log_dir.glob(f"*{test_name}*/bundle") if p.is_dir()]
    assert found, f"no bundle for {test_name} under {log_dir}: {sorted(p.name for p in log_dir.iterdir())}"
    return found[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Log directory of a child run of the sample bug (xfailed: bundle kept) and of a passing test (bundle deleted)."""
    log_dir = tmp_path_factory.mktemp("recorded")
    code, out = asyncio.run(run_child_pytest(
        [SAMPLE, PASSING, "-p", "no:cacheprovider", "-q", "--hil-log-dir", str(log_dir)], timeout=300))
    assert code == 0, out[-4000:]
    assert "1 passed, 1 xfailed" in out, out[-4000:]
    return log_dir


@pytest.fixture
def bundle_copy(recorded: Path, tmp_path: Path) -> Path:
    """A private copy of the sample bug's bundle, to edit."""
    copy = tmp_path / "bundle"
    shutil.copytree(_bundle_dir(recorded, "test_calibration_offset"), copy)
    return copy


def test_failed_run_keeps_its_bundle_and_a_passed_one_does_not(recorded: Path) -> None:
    bundle = load_bundle(_bundle_dir(recorded, "test_calibration_offset"))
    assert bundle.test["outcome"] == "xfailed"
    assert [s.action for s in bundle.timeline] == ["boot", "bootstrap", "sensor", "deploy", "input"]
    assert bundle.timeline[-1].args == {"instance": 1000, "key": "offset", "value": -2e8}
    assert all(s.device_time is not None for s in bundle.timeline), "the simulator has device time"
    (service,) = bundle.services
    assert service.name == "faulty_sensor" and service.manifest_digest.startswith("sha256:") and service.elf
    fault = bundle.failure
    assert fault is not None and fault.service == "faulty_sensor"
    assert (Path(fault.location["file"]).name, fault.location["line"], fault.location["function"]) == (
        "service.c", FAULT_LINE, "loop")
    assert (bundle.root / bundle.consoles["node1"]).is_file()
    passed = [p for p in recorded.glob("*test_deploy_reports_readings*") if p.is_dir()]
    assert passed and not (passed[0] / "bundle").exists(), "a passing test's bundle is deleted"


def test_tshark_decodes_the_capture_as_coap(recorded: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: apt-get install tshark")
    capture = _bundle_dir(recorded, "test_calibration_offset") / "capture.pcapng"
    fields = ["coap.code", "coap.opt.uri_path_recon", "coap.opt.observe", "coap.type"]
    result = subprocess.run(["tshark", "-r", str(capture), "-Y", "coap", "-T", "fields",
                             *[a for f in fields for a in ("-e", f)]],
                            capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    requests = {(code, path) for code, path, *_ in rows}
    assert ("2", "/rd") in requests, f"no Register (POST /rd) in {sorted(requests)}"  # 2 = POST
    assert ("3", "/9/1000/2") in requests, "no Write of the package (PUT /9/1000/2)"  # 3 = PUT
    assert ("2", "/9/1000/4") in requests and ("2", "/9/1000/10") in requests, "no Execute of Install/Activate"
    notifications = [r for r in rows if r[0] == "69" and r[2] not in ("", "0")]  # 2.05 Content with Observe > 0
    assert notifications, "no notifications (2.05 with an Observe sequence number)"


def test_replay_on_the_simulator_reproduces_the_fault(bundle_copy: Path, tmp_path: Path) -> None:
    plan = prepare(bundle_copy)
    result = asyncio.run(run(plan, tmp_path / "replay", announce=lambda line: None))
    assert result.recurred is True, result.summary()
    assert "REPRODUCED" in result.summary()
    assert load_bundle(result.bundle_dir).test["outcome"] == "replayed"


def test_replay_of_a_simulator_failure_on_qemu_reproduces_it(bundle_copy: Path, tmp_path: Path) -> None:
    skip_without_qemu_tools()
    plan = prepare(bundle_copy, target="qemu")
    assert any("mps2_an385" in note for note in plan.notes)
    result = asyncio.run(run(plan, tmp_path / "replay", announce=lambda line: None))
    assert result.recurred is True, result.summary()
    seen = next(f for f in result.seen if f.service == "faulty_sensor")
    assert "BusFault" in seen.message and seen.registers.get("pc"), seen.describe()


@pytest.mark.requires_renode
def test_replay_on_renode_reproduces_the_fault(bundle_copy: Path, tmp_path: Path) -> None:
    plan = prepare(bundle_copy, target="renode")
    result = asyncio.run(run(plan, tmp_path / "replay", announce=lambda line: None))
    assert result.recurred is True, result.summary()


async def _replay_under_gdb(plan, log_dir: Path, gdb_args: list[str]) -> tuple[str, object]:
    """Replay with a GDB server; gdb-multiarch in batch mode runs ``gdb_args`` against it."""
    commands: asyncio.Queue[str] = asyncio.Queue()
    replay = asyncio.create_task(run(plan, log_dir, gdb_port=0, announce=lambda line: commands.put_nowait(line)))
    try:
        while True:
            line = await asyncio.wait_for(commands.get(), 60)
            if line.lstrip().startswith("gdb-multiarch") or "\n  gdb-multiarch" in line:
                command = line.split("\n")[-1].strip()
                break
        import shlex

        proc = await asyncio.create_subprocess_exec(
            *shlex.split(command), "-batch", "-ex", "set pagination off", *gdb_args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        result = await asyncio.wait_for(replay, 120)
        return out.decode(errors="replace"), result
    finally:
        if not replay.done():
            replay.cancel()
            await asyncio.gather(replay, return_exceptions=True)


GDB_BREAK_LOOP = ["-ex", "set breakpoint pending on", "-ex", "break loop", "-ex", "continue", "-ex", "bt"]


def _gdb_or_skip() -> None:
    if shutil.which("gdb-multiarch") is None:
        pytest.skip("gdb-multiarch is not installed: apt-get install gdb-multiarch")


def test_gdb_attaches_to_the_simulators_service_cpu_and_stops_at_loop(bundle_copy: Path, tmp_path: Path) -> None:
    _gdb_or_skip()
    out, result = asyncio.run(_replay_under_gdb(prepare(bundle_copy), tmp_path / "replay", GDB_BREAK_LOOP))
    assert re.search(r"Breakpoint 1, loop \(\) at \S*faulty_sensor/service\.c:\d+", out), out
    assert re.search(r"#0\s+loop \(\) at \S*service\.c", out), out
    assert result.recurred is True, result.summary()  # detaching lets the replay run on to the fault


@pytest.mark.parametrize("target", ["qemu", pytest.param("renode", marks=pytest.mark.requires_renode)])
def test_gdb_attaches_to_a_replay_on_an_emulator_and_stops_at_loop(bundle_copy: Path, tmp_path: Path, target: str) -> None:
    if target == "qemu":
        skip_without_qemu_tools()
    _gdb_or_skip()
    out, result = asyncio.run(_replay_under_gdb(prepare(bundle_copy, target=target), tmp_path / "replay",
                                                GDB_BREAK_LOOP))
    assert re.search(r"Breakpoint 2, loop \(\) at \S*faulty_sensor/service\.c:\d+", out), out
    assert re.search(r"#0\s+loop \(\) at \S*service\.c", out), out
    assert result.recurred is True, result.summary()


# -- digests and bad input: one clear error each, nothing started -------------------------------------

def _edit(bundle: Path, change) -> None:
    path = bundle / "bundle.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_service_whose_digest_does_not_match_is_refused_naming_both(bundle_copy: Path) -> None:
    service_json = next(bundle_copy.glob("services/*/service.json"))
    service_json.write_text(service_json.read_text().replace('"version": 1', '"version": 2'))
    recorded = load_bundle(bundle_copy).services[0].sha256
    with pytest.raises(ReplayError) as e:
        prepare(bundle_copy)
    message = str(e.value)
    assert recorded in message and re.search(r"the file has [0-9a-f]{64}", message), message


def test_firmware_whose_digest_does_not_match_is_refused_naming_both(bundle_copy: Path, tmp_path: Path) -> None:
    skip_without_qemu_tools()
    firmware = tmp_path / "embserve.elf"
    firmware.write_bytes(b"\x7fELF not the firmware that ran")

    def on_qemu(data: dict) -> None:
        data["target"] = "qemu"
        data["board"] = {"name": "mps2_an385", "source": None, "contents": None}
        data["firmware"] = {"path": str(firmware), "sha256": "0" * 64, "build_id": None}

    _edit(bundle_copy, on_qemu)
    with pytest.raises(ReplayError) as e:
        prepare(bundle_copy)
    assert "0" * 64 in str(e.value) and re.search(r"sha256 is now [0-9a-f]{64}", str(e.value)), str(e.value)


@pytest.mark.parametrize("change,expected", [
    (lambda d: d.pop("timeline"), "required field 'timeline' is missing"),
    (lambda d: d.update(version=99), "unknown schema version 99"),
    (lambda d: d["timeline"].reverse(), "timeline steps out of order"),
    (lambda d: d["timeline"][3].update(device_time=0.0, wall_time=0.0), "out of order"),
    (lambda d: d.update(target="serial"), "target 'serial' cannot run board 'sim'"),
    (lambda d: d.update(board={"name": "sim", "source": None, "contents": None}, target="hardware"), "unknown target"),
])
def test_bad_bundle_gives_one_clear_error(bundle_copy: Path, change, expected: str) -> None:
    _edit(bundle_copy, change)
    with pytest.raises(ReplayError, match=re.escape(expected)):
        prepare(bundle_copy)


def test_bundle_whose_firmware_is_missing_is_refused(bundle_copy: Path) -> None:
    def missing(data: dict) -> None:
        data["target"] = "qemu"
        data["board"] = {"name": "mps2_an385", "source": None, "contents": None}
        data["firmware"] = {"path": "/nonexistent/embserve.elf", "sha256": "1" * 64, "build_id": None}

    _edit(bundle_copy, missing)
    skip_without_qemu_tools()
    with pytest.raises(ReplayError, match=r"firmware /nonexistent/embserve.elf \(sha256 1{64}\) is missing"):
        prepare(bundle_copy)


def test_replay_command_on_a_truncated_bundle_says_so_in_one_line(bundle_copy: Path) -> None:
    path = bundle_copy / "bundle.json"
    path.write_text(path.read_text()[:200])
    result = subprocess.run([sys.executable, "-m", "hil.cli", "replay", str(bundle_copy)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "not valid JSON (truncated or hand-edited?)" in result.stderr, result.stderr
    assert result.stdout == ""


def test_hil_gdb_holds_the_test_until_the_debugger_lets_it_go(tmp_path: Path) -> None:
    """``pytest --hil-gdb``: the test waits at boot for GDB; GDB stops at the service's loop, then the test goes on."""
    _gdb_or_skip()

    async def scenario() -> tuple[str, str]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pytest", SAMPLE, "-p", "no:cacheprovider", "-q", "--hil-gdb",
            "--hil-log-dir", str(tmp_path / "logs"), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        seen = []
        try:
            assert child.stdout is not None
            while True:
                line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode()
                assert line, "pytest ended without printing the gdb command:\n" + "".join(seen)
                seen.append(line)
                if line.strip().startswith("gdb-multiarch"):
                    break
            import shlex

            gdb = await asyncio.create_subprocess_exec(
                *shlex.split(line.strip()), "-batch", *GDB_BREAK_LOOP,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            gdb_out, _ = await asyncio.wait_for(gdb.communicate(), 90)
            rest, _ = await asyncio.wait_for(child.communicate(), 120)
            return gdb_out.decode(errors="replace"), "".join(seen) + rest.decode(errors="replace")
        finally:
            for proc in (child,):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    gdb_out, pytest_out = asyncio.run(scenario())
    assert re.search(r"#0\s+loop \(\) at \S*faulty_sensor/service\.c", gdb_out), gdb_out
    assert "1 xfailed" in pytest_out, pytest_out[-3000:]


def test_replay_stop_at_performs_the_steps_up_to_it(bundle_copy: Path, tmp_path: Path) -> None:
    result = asyncio.run(run(prepare(bundle_copy), tmp_path / "replay", stop_at=3, hold=0.0, announce=lambda line: None))
    assert result.steps_done == 3
    replayed = load_bundle(result.bundle_dir)
    assert [s.action for s in replayed.timeline] == ["boot", "bootstrap", "sensor"]
    assert replayed.services == [] and result.seen == []


def test_slip_line_is_captured_from_the_device_side(tmp_path: Path) -> None:
    """A node on SLIP: its own addresses (192.0.2.2 -> 192.0.2.1) on interface 'node1 sl0', beside the gateway's."""
    skip_without_qemu_tools()
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: apt-get install tshark")
    from hil.boards import get_board
    from hil.bundle import Recorder
    from hil.gateway.capture import tap
    from hil.gateway.server import Gateway
    from hil.targets.base import TargetConfig
    from hil.targets.qemu import QemuTarget

    async def scenario() -> Path:
        recorder = Recorder(nodeid="slip", target="qemu")
        async with Gateway() as gw:
            untap = tap(gw, recorder.gateway_sink(gw.host, gw.port))
            config = TargetConfig(endpoint="node1", log_dir=tmp_path, board=get_board("mps2_an385"),
                                  options={"net": "slip"}, timeline=recorder.timeline, capture=recorder.capture)
            async with QemuTarget(config) as target:
                recorder.add_device(target)
                await target.bootstrap(target.device_server_uri(gw.host, gw.port))
                await gw.wait_for_registration("node1", timeout=30)
                await gw.read("node1", "/3/0/17")
            untap()
        recorder.write(tmp_path / "bundle", outcome="passed")
        return tmp_path / "bundle"

    bundle = asyncio.run(scenario())
    out = subprocess.run(["tshark", "-r", str(bundle / "capture.pcapng"), "-Y", "coap", "-T", "fields",
                          "-e", "frame.interface_name", "-e", "ip.src", "-e", "ip.dst", "-e", "coap.opt.uri_path_recon"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert ["node1 sl0", "192.0.2.2", "192.0.2.1", "/rd"] in rows, rows
    assert ["gateway", "127.0.0.1", "127.0.0.1", "/rd"] in rows, rows
    assert any(r[0] == "node1 sl0" and r[1] == "192.0.2.1" and r[3] == "/3/0/17" for r in rows), rows
    assert load_bundle(bundle).capture["interfaces"] == ["gateway", "node1 sl0"]
