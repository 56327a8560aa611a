"""Benches shared through labgrid, for real: a coordinator and exporters on loopback, QEMU boards behind ser2net.

The lab (:class:`hil.infra.lab.LocalLab`) is a real ``labgrid-coordinator``
and one real ``labgrid-exporter`` per bench, each exporting the bench's
console (a QEMU pty served over RFC 2217 by Debian's ser2net) as a
``NetworkSerialPort`` and its power switch as an ``ExternalPowerPort`` wired
to QEMU's monitor. Test runs are child pytest processes with ``--lg-place``,
as a user runs them; ``labgrid-client who`` says what is still acquired.

Only what each check needs runs through the lab (one HIL test, small tests
of our own for the rest): the suite's other tests wait out 30 s periods.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_child_pytest

from hil.infra.ports import unused_port

pytest.importorskip("labgrid", reason="labgrid is not installed: pip install 'embserve-hil[labgrid]'")

from hil.infra.lab import LocalLab  # noqa: E402
from hil.infra.labgrid import labgrid_client, who  # noqa: E402
from hil.targets.labgrid_place import LeaseSpec, PlaceError, PlaceLease  # noqa: E402

pytestmark = pytest.mark.emulation
GUEST_HOST_ALIAS = "10.0.2.2"  # the host's loopback as QEMU user networking shows it to the guest

# A test module of our own for the child runs: the node fixture on the place, held for LG_TEST_HOLD seconds.
HOLD_TEST = '''
import asyncio, os, time
import pytest

pytestmark = pytest.mark.hil


async def _hold(node, name):
    started = time.time()
    lines = await node.shell.exec("help")
    assert any(line.split()[:1] == ["embserve"] for line in lines), lines
    deadline = time.monotonic() + float(os.environ.get("LG_TEST_HOLD", "0"))
    while time.monotonic() < deadline:
        await node.shell.exec("help")
        await asyncio.sleep(0.2)
    with open(os.environ["LG_TEST_RECORD"], "a") as record:
        record.write(f"{name} {started} {time.time()}\\n")


async def test_first(node):
    await _hold(node, "first")


async def test_second(node):
    await _hold(node, "second")


def test_holds_the_place(lg_place):
    import time
    time.sleep(float(os.environ.get("LG_TEST_HOLD", "0")))
'''


@pytest.fixture(scope="module")
def lab(hil_reference_firmware, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLab]:
    for tool, package in (("ser2net", "ser2net"), ("qemu-system-arm", "qemu-system-arm")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed: apt-get install {package}")
    with LocalLab(hil_reference_firmware("mps2_an385"), log_dir=tmp_path_factory.mktemp("lab")) as running:
        yield running
        assert who(running.coordinator_url) == [], "a place was left acquired"


@pytest.fixture
def run_env(lab: LocalLab, tmp_path: Path) -> dict[str, str]:
    """The child run's environment: the lab's coordinator, a board file for its benches, a record file."""
    boards = tmp_path / "boards"
    boards.mkdir()
    flash = f"{sys.executable} -m hil.infra.lab {lab.control_address} {{place}} flash {{firmware}}"
    (boards / "mps2_an385_lab.toml").write_text(
        'name = "mps2_an385_lab"\n'
        'description = "reference firmware on a QEMU bench of the local labgrid lab"\n'
        'arch = "armv7-m"\nbackends = ["serial"]\nboot_timeout = 15\n'
        f'labgrid_flash = "command"\nlabgrid_flash_command = {flash!r}\n'
    )
    return {k: v for k, v in os.environ.items() if not k.startswith(("LG_", "PYTEST_XDIST"))} | {
        "LG_COORDINATOR": lab.coordinator_url, "EMBSERVE_HIL_BOARDS": str(boards),
        "LG_TEST_RECORD": str(tmp_path / "record.txt"), "LG_TEST_HOLD": "0",
    }


def hold_test(tmp_path: Path) -> Path:
    path = tmp_path / "test_on_the_lab.py"
    path.write_text(HOLD_TEST)
    return path


def lab_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["-q", "-p", "no:cacheprovider", "-rs", "-W", "ignore::DeprecationWarning", "--board", "mps2_an385_lab",
            "--gateway-host", GUEST_HOST_ALIAS, "--hil-log-dir", str(tmp_path / "hil-logs"), *extra]


def records(env: dict[str, str]) -> dict[str, tuple[float, float]]:
    lines = Path(env["LG_TEST_RECORD"]).read_text().split("\n")
    return {name: (float(start), float(end)) for name, start, end in (line.split() for line in lines if line)}


async def test_hil_test_passes_through_lg_place_after_flashing_the_bench(lab: LocalLab, run_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    firmware = tmp_path / "build" / "embserve.elf"
    firmware.parent.mkdir()
    # The reference firmware with a trailer of its own: what the bench boots from afterwards tells it was flashed.
    firmware.write_bytes(lab.firmware.read_bytes() + b"embserve-hil flash check " + os.urandom(8).hex().encode())
    code, out = await run_child_pytest(
        ["tests/hil", "-k", "test_deploy_reports_readings", "--lg-place", "bench-a", "--firmware", str(firmware),
         *lab_args(tmp_path)], env=run_env, timeout=300)
    assert code == 0 and "1 passed" in out, out[-4000:]
    assert "bench-a: tests/hil/test_temperature_sensor.py::test_deploy_reports_readings passed" in out, out[-3000:]
    assert "labgrid: acquired place bench-a" in out and "labgrid: released place bench-a" in out, out[-3000:]
    assert lab.bench("bench-a").flash_image.read_bytes() == firmware.read_bytes()
    assert who(lab.coordinator_url) == []


async def test_two_places_and_two_workers_use_both_benches(lab: LocalLab, run_env: dict[str, str], tmp_path: Path) -> None:
    run_env["LG_TEST_HOLD"] = "2"  # long enough that one worker cannot take both tests
    code, out = await run_child_pytest(
        [str(hold_test(tmp_path)), "-k", "first or second", "-n", "2", "--lg-place", "bench-*", *lab_args(tmp_path)],
        env=run_env, timeout=180)
    assert code == 0 and "2 passed" in out, out[-4000:]
    summary = out[out.index("labgrid places"):]
    used = {line.split(":", 1)[0] for line in summary.splitlines()[1:] if line.startswith("bench-")}
    assert used == {"bench-a", "bench-b"}, summary
    assert who(lab.coordinator_url) == []


async def test_a_second_session_waits_for_the_place_then_runs(lab: LocalLab, run_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    run_env["LG_TEST_HOLD"] = "2"
    test = hold_test(tmp_path)
    first, second = await asyncio.gather(*(
        # by node id: "-k second" would also match this test's own folder (test_a_second_session_...)
        run_child_pytest([f"{test}::test_{name}", "--lg-place", "bench-b", *lab_args(tmp_path / name)],
                         env=run_env, timeout=180)
        for name in ("first", "second")))
    for code, out in (first, second):
        assert code == 0 and "1 passed" in out, out[-4000:]
    waited = [out for _, out in (first, second) if "labgrid: waiting" in out]
    assert len(waited) == 1, (first[1][-2000:], second[1][-2000:])
    assert "bench-b held by" in waited[0], waited[0][-2000:]
    (a_start, a_end), (b_start, b_end) = sorted(records(run_env).values())
    assert a_end <= b_start, f"the two sessions used bench-b at once: {a_start}-{a_end} and {b_start}-{b_end}"


async def test_killing_a_run_releases_its_place(lab: LocalLab, run_env: dict[str, str], tmp_path: Path) -> None:
    """SIGKILL on bench-a (the guardian releases it), SIGTERM on bench-b (the run's own teardown does), side by side."""
    run_env["LG_TEST_HOLD"] = "120"
    test = hold_test(tmp_path)
    kills = {"bench-a": signal.SIGKILL, "bench-b": signal.SIGTERM}
    runs = {place: await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", str(test), "-k", "holds_the_place", "--lg-place", place,
        *lab_args(tmp_path / place), cwd=REPO, env=run_env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT) for place in kills}
    try:
        await wait_for(lambda: len(who(lab.coordinator_url)) == 2, "both places acquired", 30)
        for place, how in kills.items():
            runs[place].send_signal(how)
        outs = {place: (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
                for place, proc in runs.items()}
    finally:
        for proc in runs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    await wait_for(lambda: who(lab.coordinator_url) == [], "both places released", 30)
    assert "labgrid: released place bench-b" in outs["bench-b"], outs["bench-b"][-3000:]  # SIGTERM: the run did
    assert "labgrid: released place bench-a" not in outs["bench-a"]  # SIGKILL: its guardian did
    reservations = labgrid_client(lab.coordinator_url, "reservations")
    assert "bench-a" not in reservations and "bench-b" not in reservations, reservations


async def wait_for(condition, what: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(condition):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


# -- bad input: one line naming the place and what is wrong; nothing left acquired ----------------------------


def lease(lab: LocalLab, place: str, timeout: float = 10.0, coordinator: str | None = None) -> PlaceLease:
    return PlaceLease(LeaseSpec(place=place, coordinator=coordinator or lab.coordinator_url, acquire_timeout=timeout))


def test_an_unknown_place_is_named_with_the_places_there(lab: LocalLab) -> None:
    with pytest.raises(PlaceError) as e:
        lease(lab, "k64f-*").acquire()
    assert str(e.value) == (f"labgrid place 'k64f-*' is unknown to the coordinator at {lab.coordinator_url};"
                            f" places there: bench-a, bench-b")
    assert who(lab.coordinator_url) == []


async def test_an_unknown_place_fails_the_run_with_one_line(lab: LocalLab, run_env: dict[str, str], tmp_path: Path) -> None:
    code, out = await run_child_pytest([str(hold_test(tmp_path)), "-k", "first", "--lg-place", "nowhere",
                                        *lab_args(tmp_path)], env=run_env, timeout=120)
    assert code != 0
    line = f"labgrid place 'nowhere' is unknown to the coordinator at {lab.coordinator_url}; places there: bench-a, bench-b"
    assert line in out.splitlines(), out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def test_a_place_without_a_serial_port_is_refused(lab: LocalLab) -> None:
    url = lab.coordinator_url
    labgrid_client(url, "-p", "power-only", "create")
    try:
        labgrid_client(url, "-p", "power-only", "add-match", "host-bench-a/bench-a/ExternalPowerPort")
        with pytest.raises(PlaceError) as e:
            lease(lab, "power-only").acquire()
        assert str(e.value) == ("labgrid place power-only has no serial port resource (NetworkSerialPort or"
                                " USBSerialPort); it has: ExternalPowerPort (matches:"
                                " host-bench-a/bench-a/ExternalPowerPort)")
    finally:
        labgrid_client(url, "-p", "power-only", "delete")
    assert who(url) == []


def test_a_coordinator_that_is_down_is_named(lab: LocalLab) -> None:
    address = f"127.0.0.1:{unused_port()}"
    with pytest.raises(PlaceError) as e:
        lease(lab, "bench-a", coordinator=address).acquire()
    assert str(e.value).startswith(f"labgrid coordinator at {address} is not reachable"), e.value


def test_a_place_held_past_the_acquire_timeout_names_its_holder(lab: LocalLab) -> None:
    url = lab.coordinator_url
    alice = {**os.environ, "LG_USERNAME": "alice", "LG_HOSTNAME": "bench-pc"}
    labgrid_client(url, "-p", "bench-b", "acquire", env=alice)
    try:
        with pytest.raises(PlaceError) as e:
            lease(lab, "bench-b", timeout=1.5).acquire()
        message = str(e.value)
        assert message.startswith("labgrid place bench-b not free within the acquire timeout of 1.5 s"
                                  " (--lg-acquire-timeout): bench-b held by bench-pc/alice since "), message
        assert "\n" not in message
    finally:
        labgrid_client(url, "-p", "bench-b", "release", env=alice)
    assert who(url) == []
    assert "bench-b" not in labgrid_client(url, "reservations")  # our waiting reservation was cancelled


async def test_an_exporter_vanishing_mid_test_fails_naming_the_place(lab: LocalLab, run_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    run_env["LG_TEST_HOLD"] = "60"
    run = asyncio.ensure_future(run_child_pytest(
        [str(hold_test(tmp_path)), "-k", "first", "--lg-place", "bench-b", *lab_args(tmp_path)], env=run_env, timeout=120))
    try:
        await wait_for(lambda: any("bench-b" in line for line in who(lab.coordinator_url)), "bench-b acquired", 30)
        await wait_for(lambda: (tmp_path / "hil-logs").exists() and any(
            "Registration Done" in p.read_text(errors="replace") for p in (tmp_path / "hil-logs").rglob("node1.console.log")),
            "the node registered", 30)
        await asyncio.to_thread(lab.stop_bench_host, "bench-b")  # the bench host goes down: exporter and ser2net
        code, out = await run
    finally:
        if not run.done():
            run.cancel()
        await asyncio.to_thread(lab.start_bench_host, "bench-b")
    assert code != 0 and "1 failed" in out, out[-4000:]
    failure = next(line for line in out.splitlines() if "labgrid place bench-b" in line and "FAILED" not in line)
    assert "went away" in failure, out[-4000:]
    assert who(lab.coordinator_url) == []


async def test_an_environment_file_names_the_place_and_its_power_driver(lab: LocalLab, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hil.boards import get_board
    from hil.targets.base import TargetConfig
    from hil.targets.labgrid import LabgridTarget

    monkeypatch.delenv("LG_COORDINATOR", raising=False)  # the file's coordinator_address applies
    env = tmp_path / "lab-env.yaml"
    power = {f"cmd_{action}": lab.power_command("bench-b", action) for action in ("on", "off", "cycle")}
    env.write_text(yaml.safe_dump({"targets": {"main": {"resources": {"RemotePlace": {"name": "bench-b"}},
                                                   "drivers": {"ExternalPowerDriver": power}}},
                              "options": {"coordinator_address": lab.coordinator_url}}, sort_keys=False))
    place = PlaceLease(LeaseSpec(env_file=str(env)))
    await asyncio.to_thread(place.acquire)
    try:
        config = TargetConfig(endpoint="node1", log_dir=tmp_path / "logs", board=get_board("mps2_an385"),
                              options={"labgrid_place": place})
        async with LabgridTarget(config) as target:
            assert place.place == "bench-b"
            assert target.power is place.labgrid_target().get_driver("PowerProtocol")  # the file's driver
            assert target.url.startswith("rfc2217://127.0.0.1:")
            assert any(line.split()[:1] == ["embserve"] for line in await target.shell.exec("help"))
        log = (tmp_path / "logs" / "node1.console.log").read_text()
        assert "*** Booting embServe reference firmware" in log  # the power cycle's boot, seen from the start
    finally:
        await asyncio.to_thread(place.release)
    assert who(lab.coordinator_url) == []
