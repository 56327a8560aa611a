"""Shell commands a board file names, run on this host: reset, flash, a sensor's stimulus.

Placeholders are filled shell-quoted; the command's output goes to
``<endpoint>.<kind>.log`` in the test's log directory; a command that outlives
its timeout (or whose caller is cancelled) is killed with its process group,
and a failure names the command, its exit code and the end of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from .errors import TargetError


async def run_host_command(endpoint: str, kind: str, template: str, values: Mapping[str, object], *,
                           log_dir: Path, timeout: float) -> None:
    """Fill ``template`` with ``values`` (shell-quoted) and run it; :class:`TargetError` when it fails."""
    try:
        command = template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
    except (KeyError, IndexError, ValueError) as e:
        raise TargetError(f"{endpoint}: {kind} command {template!r} has a bad placeholder: {e}") from None
    log_path = log_dir / f"{endpoint}.{kind}.log"
    with open(log_path, "ab") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {kind}: {command}\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except BaseException as e:  # timeout, or cancelled: never leave it running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(e, asyncio.TimeoutError):
                raise TargetError(
                    f"{endpoint}: {kind} command did not finish within {timeout:g} s: {command}"
                    f"\n{log_tail(log_path)}\n(full log: {log_path})"
                ) from None
            raise
    if code != 0:
        raise TargetError(
            f"{endpoint}: {kind} command exited with code {code}: {command}"
            f"\n{log_tail(log_path)}\n(full log: {log_path})"
        )


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a command's log, indented for an error message."""
    try:
        text = path.read_bytes()[-8192:].decode("utf-8", errors="replace")
    except OSError as e:
        return f"    | <no log: {e}>"
    return "\n".join(f"    | {line}" for line in text.splitlines()[-lines:]) or "    | <no output>"
