"""A labgrid lab on loopback: a real coordinator, and benches that are QEMU boards.

Each bench is the reference firmware on QEMU mps2-an385 with its console on a
pseudo-terminal (:class:`hil.infra.qemu.QemuMachine`, ``console="pty"``),
served over RFC 2217 by Debian's ``ser2net`` (:class:`hil.infra.ser2net.Ser2net`),
as an exporter serves a board's USB serial port. Each bench has its own
``labgrid-exporter`` (a bench host of its own, ``host-<bench>``) publishing

* ``NetworkSerialPort``: the ser2net port;
* ``ExternalPowerPort``: the bench's power switch, three commands
  (``cmd_on``, ``cmd_off``, ``cmd_cycle``) that labgrid's
  ``ExternalPowerDriver`` runs where the place is used. They reach this lab's
  bench control (a line server on loopback) with
  ``python -m hil.infra.lab HOST:PORT BENCH on|off|cycle``: *cycle* is
  ``system_reset`` on QEMU's monitor, *off* ends QEMU, *on* starts it again
  (booting whatever was flashed last).

Flashing a bench (``python -m hil.infra.lab HOST:PORT BENCH flash FILE``)
writes the ELF over the bench's own flash image and power-cycles the board
by ending and restarting QEMU. The console keeps its path across restarts:
ser2net opens ``<bench>/console.tty``, a symlink re-pointed at each new pty.

The coordinator has one place per bench, named after it, matching
``host-<bench>/<bench>/*`` and tagged ``board=<board>``::

    with LocalLab(firmware, log_dir=tmp) as lab:
        os.environ["LG_COORDINATOR"] = lab.coordinator_url
        ...  # pytest --lg-place 'bench-*' ...

``python -m hil.infra.lab serve FIRMWARE`` runs one until interrupted (try
the labgrid integration without hardware). Everything it started is stopped when
the block ends, also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import socketserver
import sys
import threading
from pathlib import Path
from typing import Self

from .labgrid import LabgridCoordinator, LabgridExporter, labgrid_client
from .ports import LOOPBACK
from .process import InfraError
from .qemu import QemuMachine
from .ser2net import Ser2net

BENCHES = ("bench-a", "bench-b")
POWER_ACTIONS = ("on", "off", "cycle")
CONTROL_TIMEOUT = 30.0


class QemuBench:
    """One bench: a QEMU board with a console path that survives power cycles, and its power switch."""

    def __init__(self, name: str, firmware: Path, directory: Path):
        self.name = name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.flash_image = directory / "flash.elf"  # the bench's own copy: flashing never touches the source
        shutil.copyfile(firmware, self.flash_image)
        self.console = directory / "console.tty"
        self.qemu = QemuMachine(self.flash_image, console="pty", log_dir=directory, name=f"qemu-{name}")
        self._lock = threading.Lock()

    @property
    def powered(self) -> bool:
        return self.qemu.running

    def power(self, action: str) -> None:
        with self._lock:
            if action == "on":
                self._on()
            elif action == "off":
                self.qemu.stop()
            elif action == "cycle":
                if self.qemu.running:
                    self.qemu.reset()  # system_reset: the console stays connected, as on a board
                else:
                    self._on()
            else:
                raise InfraError(f"bench {self.name}: unknown power action {action!r}; known: {', '.join(POWER_ACTIONS)}")

    def flash(self, firmware: Path) -> None:
        """Write ``firmware`` over the flash image; the board restarts from it."""
        with open(firmware, "rb") as f:
            if f.read(4) != b"\x7fELF":
                raise InfraError(f"bench {self.name}: {firmware} is not an ELF file; nothing was flashed")
        with self._lock:
            self.qemu.stop()
            staged = self.flash_image.with_suffix(".new")
            shutil.copyfile(firmware, staged)
            os.replace(staged, self.flash_image)
            self._on()

    def _on(self) -> None:
        if self.qemu.running:
            return
        self.qemu.start()
        assert self.qemu.pty is not None
        link = self.console.with_suffix(".new")
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(self.qemu.pty)
        os.replace(link, self.console)

    def stop(self) -> None:
        with self._lock:
            self.qemu.stop()


class _ControlHandler(socketserver.StreamRequestHandler):
    """One request per connection: ``BENCH ACTION [FILE]`` -> ``ok`` or ``error: ...``."""

    def handle(self) -> None:
        lab: LocalLab = self.server.lab  # type: ignore[attr-defined]
        words = self.rfile.readline(4096).decode(errors="replace").strip().split(maxsplit=2)
        try:
            if len(words) < 2:
                raise InfraError("expected: BENCH on|off|cycle, or BENCH flash FILE")
            bench = lab.bench(words[0])
            if words[1] == "flash":
                if len(words) < 3:
                    raise InfraError("flash needs the firmware file")
                bench.flash(Path(words[2]))
            else:
                bench.power(words[1])
            answer = "ok"
        except (InfraError, OSError) as e:
            answer = f"error: {e}"
        self.wfile.write(answer.encode() + b"\n")


class _ControlServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def control(address: str, bench: str, action: str, *args: str, timeout: float = CONTROL_TIMEOUT) -> None:
    """Send one request to a lab's bench control; :class:`InfraError` with its answer when it fails."""
    host, _, port = address.rpartition(":")
    request = " ".join([bench, action, *args])
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(request.encode() + b"\n")
            answer = sock.makefile("rb").readline().decode(errors="replace").strip()
    except (OSError, ValueError) as e:
        raise InfraError(f"bench control at {address}: {request}: {e}") from None
    if answer != "ok":
        raise InfraError(f"bench control at {address}: {request}: {answer or 'no answer'}")


class LocalLab:
    """Coordinator, benches, their ser2net and exporters, places; see the module docs."""

    def __init__(self, firmware: str | os.PathLike[str], *, log_dir: str | os.PathLike[str],
                 benches: tuple[str, ...] = BENCHES, board: str = "mps2_an385"):
        self.firmware = Path(firmware).resolve()
        self.log_dir = Path(log_dir)
        self.bench_names = benches
        self.board = board
        self.coordinator = LabgridCoordinator(log_dir=self.log_dir / "coordinator")
        self.benches: dict[str, QemuBench] = {}
        self.ser2net: dict[str, Ser2net] = {}
        self.exporters: dict[str, LabgridExporter] = {}
        self._control: _ControlServer | None = None

    @property
    def coordinator_url(self) -> str:
        return self.coordinator.url

    @property
    def control_address(self) -> str:
        assert self._control is not None, "the lab is not started"
        host, port = self._control.server_address[:2]
        return f"{host}:{port}"

    def bench(self, name: str) -> QemuBench:
        try:
            return self.benches[name]
        except KeyError:
            raise InfraError(f"no bench {name!r} in this lab; benches: {', '.join(self.benches)}") from None

    def power_command(self, bench: str, action: str) -> str:
        return shlex.join([sys.executable, "-m", "hil.infra.lab", self.control_address, bench, action])

    def exporter_name(self, bench: str) -> str:
        return f"host-{bench}"

    # -- lifetime -----------------------------------------------------------

    def start(self) -> Self:
        try:
            self.coordinator.start()
            self._control = _ControlServer((LOOPBACK, 0), _ControlHandler)
            self._control.lab = self  # type: ignore[attr-defined]
            threading.Thread(target=self._control.serve_forever, name="lab bench control", daemon=True).start()
            for name in self.bench_names:
                bench = self.benches[name] = QemuBench(name, self.firmware, self.log_dir / name)
                bench.power("on")
                self.start_bench_host(name)
                self._client("-p", name, "create")
                self._client("-p", name, "add-match", f"{self.exporter_name(name)}/{name}/*")
                self._client("-p", name, "set-tags", f"board={self.board}")
        except BaseException:
            self.stop()
            raise
        return self

    def start_bench_host(self, name: str) -> None:
        """Start the bench's ser2net and exporter (again, after :meth:`stop_bench_host`)."""
        bench = self.bench(name)
        server = self.ser2net[name] = Ser2net(bench.console, log_dir=bench.directory, name=f"ser2net-{name}")
        server.start()
        resources = {name: {
            "NetworkSerialPort": {"host": server.host, "port": server.port, "speed": server.speed},
            "ExternalPowerPort": {action: self.power_command(name, action.removeprefix("cmd_"))
                                  for action in ("cmd_on", "cmd_off", "cmd_cycle")},
        }}
        exporter = self.exporters[name] = LabgridExporter(self.coordinator_url, self.exporter_name(name), resources,
                                                          log_dir=bench.directory)
        exporter.start()

    def stop_bench_host(self, name: str) -> None:
        """The bench host goes down: its exporter and its ser2net end (the board stays powered)."""
        for process in (self.exporters.pop(name, None), self.ser2net.pop(name, None)):
            if process is not None:
                process.stop(term_timeout=1.0)

    def stop(self) -> None:
        errors: list[BaseException] = []
        for name in list(self.exporters) + [n for n in self.ser2net if n not in self.exporters]:
            try:
                self.stop_bench_host(name)
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        for bench in self.benches.values():
            try:
                bench.stop()
            except Exception as e:
                errors.append(e)
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self._control = None
        self.coordinator.stop()
        if errors:
            raise errors[0]

    def _client(self, *args: str) -> str:
        return labgrid_client(self.coordinator_url, *args)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


def main(argv: list[str]) -> int:
    usage = ("usage: python -m hil.infra.lab HOST:PORT BENCH on|off|cycle\n"
             "       python -m hil.infra.lab HOST:PORT BENCH flash FILE\n"
             "       python -m hil.infra.lab serve FIRMWARE [LOG_DIR]")
    if argv[:1] == ["serve"] and len(argv) in (2, 3):
        return _serve(Path(argv[1]), Path(argv[2]) if len(argv) == 3 else Path(".hil-logs") / "lab")
    if len(argv) < 3 or ":" not in argv[0] or (argv[2] not in POWER_ACTIONS and argv[2] != "flash") \
            or (argv[2] == "flash") != (len(argv) == 4):
        print(usage, file=sys.stderr)
        return 2
    try:
        control(argv[0], argv[1], argv[2], *argv[3:])
    except InfraError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def _serve(firmware: Path, log_dir: Path) -> int:
    import signal

    with LocalLab(firmware, log_dir=log_dir) as lab:
        print(f"export LG_COORDINATOR={lab.coordinator_url}")
        print(f"places: {', '.join(lab.benches)} (board tag {lab.board}); logs in {log_dir}; Ctrl-C stops the lab",
              flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
