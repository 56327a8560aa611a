"""A real labgrid coordinator and exporter, and ``labgrid-client``, for a lab on loopback.

labgrid (PyPI ``labgrid``, the ``embserve-hil[labgrid]`` extra) shares a lab's
boards: exporters publish each bench's resources (serial port, power switch,
debug probe) to a coordinator, a gRPC server; clients reserve and acquire
*places* made of those resources. These managers run its own programs, from
the environment embserve-hil is installed in:

* :class:`LabgridCoordinator`: ``labgrid-coordinator -l 127.0.0.1:PORT`` on a
  free port; its state files (``places.yaml``, ``resources.yaml``) go to its
  own directory;
* :class:`LabgridExporter`: ``labgrid-exporter -c COORDINATOR -n NAME
  --hostname 127.0.0.1 exporter.yaml`` for a YAML it writes from a mapping;
* :func:`labgrid_client`: one ``labgrid-client -x COORDINATOR ...`` command,
  its output, and an error naming the command when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .process import InfraError, ManagedProcess, MissingBinaryError, NotReady

EXTRA = "pip install 'embserve-hil[labgrid]'"
CLIENT_TIMEOUT = 30.0


def labgrid_program(name: str) -> str:
    """A labgrid program: next to this Python (the venv embserve-hil runs in), else on PATH."""
    beside = Path(sys.executable).parent / name
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise MissingBinaryError(f"{name} not found (next to {sys.executable} or on PATH); install labgrid: {EXTRA}")


class _LabgridProgram(ManagedProcess):
    """A labgrid server program; ready when its log shows :attr:`ready_line`."""

    ready_line = ""

    def binary(self) -> str:
        return labgrid_program(self.binary_name)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The client's own settings must not steer the servers.
        for name in ("LG_COORDINATOR", "LG_PLACE", "LG_ENV", "LG_TOKEN"):
            env.pop(name, None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def probe(self) -> None:
        text = self.log_path.read_text(errors="replace")
        if self.ready_line not in text.split("start: ")[-1]:
            raise NotReady(f"no {self.ready_line!r} in {self.log_path} yet")


class LabgridCoordinator(_LabgridProgram):
    name = "labgrid-coordinator"
    binary_name = "labgrid-coordinator"
    ready_line = "listening on"

    def __init__(self, *, log_dir: str | os.PathLike[str] | None = None, ready_timeout: float = 20.0) -> None:
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout)

    def prepare(self, port: int) -> list[str]:
        return [self.binary(), "-l", f"{self.host}:{port}"]

    @property
    def url(self) -> str:
        """What ``LG_COORDINATOR`` and ``labgrid-client -x`` take."""
        return self.address


class LabgridExporter(_LabgridProgram):
    """One exporter: ``resources`` is its YAML as a mapping (group -> resource class -> parameters)."""

    name = "labgrid-exporter"
    binary_name = "labgrid-exporter"
    ready_line = "Exporter ready"

    def __init__(
        self,
        coordinator: str,
        exporter_name: str,
        resources: Mapping[str, Any],
        *,
        log_dir: str | os.PathLike[str] | None = None,
        hostname: str = "127.0.0.1",
        ready_timeout: float = 20.0,
    ) -> None:
        self.name = f"labgrid-exporter-{exporter_name}"
        super().__init__(log_dir=log_dir, ready_timeout=ready_timeout)
        self.coordinator = coordinator
        self.exporter_name = exporter_name
        self.hostname = hostname
        self.resources = resources
        self.config_path = self.log_path.with_suffix(".yaml")

    def prepare(self, port: int) -> list[str]:
        # The port ManagedProcess chose is unused: an exporter listens nowhere, it calls the coordinator.
        self.config_path.write_text(yaml.safe_dump(_plain(self.resources), sort_keys=False))
        return [self.binary(), "-c", self.coordinator, "-n", self.exporter_name, "--hostname", self.hostname,
                str(self.config_path)]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def labgrid_client(coordinator: str, *args: str, env: Mapping[str, str] | None = None,
                   timeout: float = CLIENT_TIMEOUT) -> str:
    """Run ``labgrid-client -x COORDINATOR ARGS``; its standard output. :class:`InfraError` when it fails."""
    argv = [labgrid_program("labgrid-client"), "-x", coordinator, *args]
    environment = {k: v for k, v in (env or os.environ).items() if k not in ("LG_PLACE", "LG_ENV", "LG_TOKEN")}
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environment,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise InfraError(f"labgrid-client {' '.join(args)} did not finish within {timeout:g} s:"
                         f" {(e.stdout or '')[-500:]}{(e.stderr or '')[-500:]}") from None
    if run.returncode != 0:
        raise InfraError(f"labgrid-client {' '.join(args)} exited with code {run.returncode}:"
                         f" {(run.stderr or run.stdout).strip()[-1500:]}")
    return run.stdout


def who(coordinator: str) -> list[str]:
    """The places acquired right now, as ``labgrid-client who`` lists them (one line each, no header)."""
    lines = [line for line in labgrid_client(coordinator, "who").splitlines() if line.strip()]
    if lines and lines[0].split()[:3] == ["User", "Host", "Place"]:
        lines = lines[1:]
    return lines


__all__ = ["LabgridCoordinator", "LabgridExporter", "labgrid_client", "labgrid_program", "who", "InfraError"]
