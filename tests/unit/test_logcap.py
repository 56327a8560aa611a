"""CappedLog: a child's output into its log up to a size, the cut said in the file, the last warnings kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hil.infra.logcap import CappedLog

FLOOD = (
    "import sys\n"
    "for i in range(200000):\n"
    "    sys.stdout.write(f'12:00:00.0000 [WARNING] sysbus: read from non existing peripheral at {i:#x}\\n')\n"
    "sys.stdout.write('12:00:01.0000 [ERROR] cpu: the last straw\\n')\n"
    "sys.stdout.write('12:00:01.0001 [INFO] bye\\n')\n"
)


def run_into_log(code: str, log: Path, limit: int) -> CappedLog:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    capped = CappedLog(child.stdout, log, limit)
    assert child.wait(timeout=60) == 0  # never blocked on a full pipe, though the file stopped growing
    capped.close()
    return capped


def test_a_flood_is_cut_at_the_limit_and_the_file_says_so(tmp_path: Path) -> None:
    log = tmp_path / "renode.log"
    capped = run_into_log(FLOOD, log, 100_000)
    text = log.read_text()
    assert capped.written == 100_000 and capped.cut and capped.dropped > 10_000_000
    assert "[embserve-hil] log cut at 0.1 MB; further output is dropped" in text
    assert text.splitlines()[-1] == f"[embserve-hil] {capped.describe_cut()}"
    assert log.stat().st_size < 100_000 + 500
    # The lines after the cut are not in the file, but the last warnings are at hand for an error message.
    assert "the last straw" not in text
    assert capped.last_warnings(2)[-1] == "12:00:01.0000 [ERROR] cpu: the last straw"
    assert all("[WARNING]" in line for line in capped.last_warnings(5)[:-1])
    assert capped.first_warnings(2) == [f"12:00:00.0000 [WARNING] sysbus: read from non existing peripheral at {i:#x}"
                                        for i in (0, 1)]


def test_a_quiet_child_is_copied_whole(tmp_path: Path) -> None:
    log = tmp_path / "renode.log"
    log.write_text("=== start: renode\n")  # what the process manager writes first stays
    capped = run_into_log("print('12:00:00.0000 [INFO] Monitor available in telnet mode on port 1234')", log, 10_000)
    assert not capped.cut and capped.describe_cut() == "" and capped.last_warnings() == []
    assert log.read_text() == "=== start: renode\n12:00:00.0000 [INFO] Monitor available in telnet mode on port 1234\n"


def test_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log limit must be positive, got 0"):
        with open(__file__, "rb") as source:
            CappedLog(source, tmp_path / "x.log", 0)
