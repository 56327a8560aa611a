"""The firmware's LwM2M client built natively with a FAKE network, clock and runtime.

tests/firmware_host/lwm2m_host_fake.c links the real lwm2m.c, objects.c,
coap.c and tlv.c with fakes for everything below them, under
AddressSanitizer/UBSan when the compiler has them. Two uses:

* fuzzing: random and mutated requests (reads, writes, creates, executes,
  observations, Block1 blocks, attributes) plus random service outputs and
  faults; sanitizers catch memory errors the target could not report, and the
  program checks that every well-formed confirmable request is answered and
  that the node still serves a plain read at the end;
* the registration schedule in fake time, which would take minutes of real
  time under QEMU: CoAP retransmission and the backoff between attempts when
  nobody answers, periodic Updates before the lifetime runs out, De-register;
* the write path of a service input mapped to Set Point Value (/3308/x/5900)
  over the fake runtime, answer by answer.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path as FsPath

import pytest

REPO = FsPath(__file__).resolve().parents[2]
FIRMWARE_SRC = REPO / "firmware" / "src"
SOURCE = REPO / "tests" / "firmware_host" / "lwm2m_host_fake.c"
FIRMWARE_FILES = ["coap.c", "tlv.c", "lwm2m.c", "objects.c", "bootseed.c"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
TICK_MS = 10  # the fake clock's step


def _compile(out: FsPath, flags: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [
        # board.h casts register addresses to pointers: fine on the target, a warning on 64-bit hosts
        "gcc", "-std=gnu11", "-g", "-O0", "-Wall", "-Wextra", "-Werror", "-Wno-int-to-pointer-cast", *flags,
        f"-I{FIRMWARE_SRC}", str(SOURCE), *(str(FIRMWARE_SRC / f) for f in FIRMWARE_FILES), "-o", str(out), "-lm",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def host_client(tmp_path_factory: pytest.TempPathFactory) -> FsPath:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the firmware's LwM2M client for the host")
    out = tmp_path_factory.mktemp("fw-lwm2m") / "lwm2m_host_fake"
    built = _compile(out, SANITIZE)
    if built.returncode != 0 and "sanitize" in built.stderr:
        built = _compile(out, [])
    assert built.returncode == 0, f"host build of the LwM2M client failed:\n{built.stderr}"
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_fake_network_random_requests_never_break_the_client(host_client: FsPath, seed: int) -> None:
    run = subprocess.run([str(host_client), "60000", str(seed)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"fuzzing with seed {seed} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    fields = run.stdout.split()
    requests, answers = int(fields[0]), int(fields[2])
    assert requests == 60000
    assert answers > requests // 2, run.stdout  # NON requests get NON answers, not counted
    two_xx = int(run.stdout.split("2.xx ")[1].split()[0])
    assert two_xx > 1000, f"too few requests succeeded to reach deep code paths: {run.stdout}"


def _sent(host_client: FsPath, mode: str) -> list[tuple[int, str, int, str]]:
    run = subprocess.run([str(host_client), "schedule", mode], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = []
    for line in run.stdout.splitlines():
        ms, code, mid, uri = line.split(" ", 3)
        rows.append((int(ms), code, int(mid), uri))
    return rows


def test_fake_network_unanswered_register_is_retransmitted_then_retried_with_backoff(host_client: FsPath) -> None:
    sent = _sent(host_client, "silent")
    attempts: dict[int, list[int]] = defaultdict(list)  # message id -> send times
    for ms, code, mid, uri in sent:
        assert (code, uri) == ("0.02", "/rd?ep=sched?lt=300?lwm2m=1.1?b=U"), f"unexpected datagram at {ms} ms: {uri}"
        attempts[mid].append(ms)
    groups = [attempts[mid] for mid in sorted(attempts, key=lambda m: attempts[m][0])]
    assert len(groups) >= 4, f"only {len(groups)} register attempts in 700 s: {groups}"
    backoffs = []
    for times in groups[:-1]:
        assert len(times) == 5, f"expected 1 transmission + 4 retransmissions, got {times}"  # MAX_RETRANSMIT 4
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert 2000 <= gaps[0] <= 3000 + TICK_MS, gaps  # ACK_TIMEOUT 2 s, random factor 1.5
        for previous, gap in zip(gaps, gaps[1:]):
            assert abs(gap - 2 * previous) <= 2 * TICK_MS, f"retransmission gaps do not double: {gaps}"
    for times, following in zip(groups, groups[1:]):
        gave_up = times[-1] + 2 * (times[-1] - times[-2])  # the last wait is twice the previous one
        backoffs.append(following[0] - gave_up)
    expected = [5000, 10000, 20000, 40000, 60000, 60000][: len(backoffs)]
    assert all(abs(b - e) <= 3 * TICK_MS for b, e in zip(backoffs, expected)), f"backoffs {backoffs}, expected {expected}"


def test_fake_network_updates_come_before_the_lifetime_ends_and_deregister_closes(host_client: FsPath) -> None:
    sent = _sent(host_client, "answer")
    register, *updates, deregister = sent
    assert register[3].startswith("/rd?ep=sched?lt=300")
    assert [u[3] for u in updates] == ["/rd/f0"] * len(updates) and len(updates) == 3
    times = [register[0]] + [u[0] for u in updates]
    intervals = [b - a for a, b in zip(times, times[1:])]
    # lifetime 300 s: update at 207 s, leaving room for a full retransmission series (~93 s)
    assert all(abs(i - 207000) <= TICK_MS for i in intervals), intervals
    assert deregister[1] == "0.04"


def test_fake_network_every_warm_boot_registers_with_a_new_message_id_and_token(host_client: FsPath) -> None:
    # The fake board has no entropy at all and every boot happens at the same fake time, as under
    # Renode's virtual time: only the boot counter and seed kept in .noinit RAM tell the boots apart.
    run = subprocess.run([str(host_client), "boots", "50"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines()]
    assert [int(count) for count, _, _ in rows] == list(range(1, 51))
    assert len({mid for _, mid, _ in rows}) == 50 and len({token for _, _, token in rows}) == 50, rows


def test_fake_runtime_set_point_writes_reach_on_input_only_while_the_service_runs(host_client: FsPath) -> None:
    run = subprocess.run([str(host_client), "inputs"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "/9 2.01 ", "/9 2.01 ",
        # an input mapped to a read-only resource: install refused (54, the reason in 35003), nothing claimed
        "/9/1/2 2.04 ", "/9/1/4 2.04 ", "/9/1/9 2.05 54",
        "/35003/2/27404 2.05 input 'setpoint': lwm2m:3303/x/5700 is not writable here",
        "/3308/0/5900 4.04 /3308/0 does not exist",
        # mapped to Set Point Value: the instance comes with the install
        "/9/0/2 2.04 ", "/9/0/4 2.04 ",
        "/3308/0/5900 4.05 /3308/0/5900: input 'setpoint' of /9/0: the service is not running",
        "/9/0/10 2.04 ",
        "on_input of /9/0: setpoint=23.5", "/3308/0/5900 2.04 ",
        "/3308/0/5900 2.05 23.5",
        "/3308/0/5900 4.00 /3308/0/5900: nan does not fit input 'setpoint'",
        # and goes with the service
        "/9/0 2.02 ", "/3308/0/5900 4.04 /3308/0 does not exist",
    ], run.stdout
