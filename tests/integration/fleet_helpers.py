"""What the fleet command's tests share: running ``embserve-hil fleet`` and stopping it as a user would."""

from __future__ import annotations

import signal
import subprocess
import sys


def cli(*args: str) -> list[str]:
    """The argv of ``embserve-hil fleet ARGS`` from this checkout."""
    return [sys.executable, "-m", "hil.cli", "fleet", *args]


def ctrl_c(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Send SIGINT (Ctrl-C) and collect the rest of stdout and stderr; the process is killed if it outlives ``timeout``."""
    try:
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
