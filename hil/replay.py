"""Running a bundle's scenario again: same firmware, same services, same inputs, same device times.

:func:`prepare` checks everything a replay needs before anything starts (the
bundle, the target and board, the firmware's and services' digests) and
returns a :class:`ReplayPlan`, or raises one :class:`ReplayError` saying what
is wrong. :func:`run` then boots the devices, performs the timeline step by
step (each at the device time it was taken at, counted from the device's
boot), deploys the services straight through the gateway (no registry),
and watches the consoles for the recorded fault. The :class:`ReplayResult`
says whether the failure recurred: the same fault (the same source line when
it is known, else the same message) from the same service.

The default target is the recorded one; another target that can run the
board may be chosen. A bundle recorded on the simulator replays on QEMU or
Renode with the board's firmware: the simulated node and the reference
firmware run the same service binaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .boards import Board, BoardError, get_board, load_board_file
from .bundle import Bundle, BundleError, Recorder, load_bundle
from .bundle.schema import sha256_file
from .faredge.deployer import Deployer, DeployError, Deployment
from .faults import DeviceFault, note_service
from .gateway.capture import tap
from .gateway.server import Gateway, GatewayError
from .infra.process import MissingBinaryError
from .service import symbols
from .service.manifest import ManifestError, parse_manifest
from .targets.base import BOARD_BACKEND, DEFAULT_BOARDS, GDB_WAIT, Target, TargetConfig, TargetError, TargetUnavailable, get_target_class

log = logging.getLogger("hil.replay")

#: device seconds a replay waits past the recorded end for the failure to come back
END_GRACE = 10.0
REGISTRATION_TIMEOUT = 30.0


class ReplayError(RuntimeError):
    """A replay cannot be done as asked; nothing was left running."""


@dataclass
class ReplayPlan:
    bundle: Bundle
    target: str
    board: Board | None
    firmware: Path | None  # None: the board's own (the reference firmware is built on first use)
    packages: dict[str, bytes]  # sha256 -> service.json bytes, checked
    notes: list[str] = field(default_factory=list)  # choices made, said before starting
    #: where a real board is (serial_port, net_serial_port) and how it reaches the gateway (gateway_host,
    #: gateway_listen): as recorded on the same target, unless given
    wiring: dict[str, str | None] = field(default_factory=dict)


@dataclass
class ReplayResult:
    expected: DeviceFault | None
    seen: list[DeviceFault]
    steps_done: int
    log_dir: Path
    bundle_dir: Path | None = None

    @property
    def recurred(self) -> bool | None:
        """True: the recorded fault came back; False: it did not; None: the bundle recorded no fault."""
        if self.expected is None:
            return None
        return any(f.signature() == self.expected.signature() for f in self.seen)

    def summary(self) -> str:
        lines = []
        if self.expected is None:
            lines.append("the bundle recorded no device fault, so there is nothing to compare;")
            lines.append(f"faults in this replay: {len(self.seen)}")
        elif self.recurred:
            match = next(f for f in self.seen if f.signature() == self.expected.signature())
            lines.append(f"REPRODUCED: the recorded failure recurred: {match.describe()}")
            lines.append(f"  recorded console line: {self.expected.console_line}")
            lines.append(f"  replayed console line: {match.console_line}")
        else:
            lines.append(f"NOT REPRODUCED: the recorded failure did not recur: {self.expected.describe()}")
            lines.append(f"  recorded console line: {self.expected.console_line}")
            for f in self.seen:
                lines.append(f"  seen instead: {f.describe()}")
        lines.append(f"replay logs: {self.log_dir}")
        return "\n".join(lines)


# -- checking, before anything starts ---------------------------------------------------------------

WIRING = ("serial_port", "net_serial_port", "gateway_host", "gateway_listen")


def prepare(bundle_path: str | Path, *, target: str | None = None, board: str | None = None,
            firmware: str | Path | None = None, wiring: dict[str, str | None] | None = None) -> ReplayPlan:
    try:
        bundle = load_bundle(bundle_path)
    except BundleError as e:
        raise ReplayError(str(e)) from None
    name = target or bundle.target
    notes: list[str] = []
    try:
        cls = get_target_class(name)
    except TargetUnavailable as e:
        raise ReplayError(str(e)) from None
    chosen = _board(bundle, name, board, notes)
    fw = _firmware(bundle, cls, chosen, name, firmware, notes)
    packages: dict[str, bytes] = {}
    for record in bundle.services:
        try:
            data = bundle.service_json(record)
        except BundleError as e:
            raise ReplayError(str(e)) from None
        packages[record.sha256] = data
        _file_symbols(bundle, record, data)
    try:
        cls.check_tools()
    except (MissingBinaryError, TargetUnavailable) as e:
        raise ReplayError(f"cannot replay on {name}: {e}") from None
    recorded = {key: bundle.options.get(key) for key in WIRING} if name == bundle.target else {}
    given = {key: value for key, value in (wiring or {}).items() if value is not None}
    return ReplayPlan(bundle, name, chosen, fw, packages, notes, {**recorded, **given})


def _board(bundle: Bundle, target: str, asked: str | None, notes: list[str]) -> Board | None:
    recorded = bundle.board or {}
    try:
        if asked is not None:
            board = get_board(asked)
        elif recorded.get("name"):
            board = _recorded_board(recorded)
        else:
            default = DEFAULT_BOARDS.get(target)
            board = get_board(default) if default else None
    except BoardError as e:
        raise ReplayError(f"board: {e}") from None
    if board is None:
        raise ReplayError(f"target {target!r} needs a board: pass --board NAME (see `embserve-hil boards`)")
    if not board.supports(BOARD_BACKEND.get(target, target)):
        default = DEFAULT_BOARDS.get(target)
        if asked is None and board.name == "sim" and default:
            # The simulator's board is the simulator itself: on an emulator the node is the target's default board.
            notes.append(f"the bundle's board is the simulator; on {target} the node is board {default}")
            return get_board(default)
        raise ReplayError(f"target {target!r} cannot run board {board.name!r} (it runs on"
                          f" {', '.join(board.backends)}); choose one of those targets or pass --board")
    return board


def _recorded_board(recorded: dict) -> Board:
    """The board file as recorded when it is still where it was, else the catalog's board of that name."""
    source = recorded.get("source")
    if source and Path(source).is_file() and Path(source).read_text(encoding="utf-8") == recorded.get("contents"):
        return load_board_file(Path(source))
    return get_board(recorded["name"])


def _firmware(bundle: Bundle, cls: type[Target], board: Board | None, target: str, asked: str | Path | None,
              notes: list[str]) -> Path | None:
    if not cls.loads_firmware:
        return None
    recorded = bundle.firmware
    same_board = bool(bundle.board) and board is not None and bundle.board.get("name") == board.name
    if asked is not None:
        path = Path(asked).resolve()
        if not path.is_file():
            raise ReplayError(f"firmware {path} does not exist")
        if recorded is not None and same_board:
            actual = sha256_file(path)
            if actual != recorded.sha256:
                raise ReplayError(f"firmware {path} is not the one the bundle ran: its sha256 is {actual}, the bundle"
                                  f" recorded {recorded.sha256} ({recorded.path})")
        return path
    if recorded is None or not same_board:
        notes.append(f"firmware: the board's own ({board.name if board else '-'}); the bundle ran "
                     + (f"{recorded.path}" if recorded else "no firmware (simulator)"))
        return None
    path = Path(recorded.path)
    if not path.is_file():
        raise ReplayError(f"the bundle's firmware {path} (sha256 {recorded.sha256}) is missing; pass --firmware with"
                          f" the same build")
    actual = sha256_file(path)
    if actual != recorded.sha256:
        raise ReplayError(f"the bundle's firmware {path} has changed since it ran: its sha256 is now {actual}, the"
                          f" bundle recorded {recorded.sha256}; pass --firmware with the build it ran")
    return path


def _file_symbols(bundle: Bundle, record, data: bytes) -> None:
    """The bundle's copy of a service's ELF goes into this machine's symbol store (checked first)."""
    try:
        module = parse_manifest(data, source=record.service_json).service
    except ManifestError as e:
        raise ReplayError(str(e)) from None
    note_service(record.name, module)  # its fault lines and GDB find the ELF by the service's name
    if not record.elf:
        return
    elf = bundle.root / record.elf
    if not elf.is_file():
        raise ReplayError(f"{elf}: the ELF of service {record.name} named in bundle.json is missing")
    actual = sha256_file(elf)
    if record.elf_sha256 and actual != record.elf_sha256:
        raise ReplayError(f"{elf}: the ELF of service {record.name} does not match the bundle: bundle.json records"
                          f" sha256 {record.elf_sha256}, the file has {actual}")
    if symbols.service_elf_for(module) is None:
        symbols.store_service_elf(module, elf)


# -- running ------------------------------------------------------------------------------------------

async def run(plan: ReplayPlan, log_dir: Path, *, gdb_port: int | None = None, stop_at: int | None = None,
              sim_speed: float | None = None, announce: Callable[[str], None] = print,
              hold: float | None = 0.0, end_grace: float = END_GRACE) -> ReplayResult:
    """Perform the timeline (up to step ``stop_at``) and watch for the recorded failure.

    With ``stop_at``, the devices stay up for ``hold`` seconds after that
    step (None: until cancelled) so a debugger can look at them.
    """
    bundle = plan.bundle
    log_dir.mkdir(parents=True, exist_ok=True)
    random.seed(bundle.seed)
    speed = sim_speed if sim_speed is not None else float(bundle.options.get("sim_speed") or 10.0)
    recorder = Recorder(nodeid=f"replay of {bundle.test.get('nodeid')}", target=plan.target, board=plan.board,
                        options={"bundle": str(bundle.root), "target": plan.target, "gdb": gdb_port, "stop_at": stop_at},
                        seed=bundle.seed)
    for note in plan.notes:
        announce(f"replay: {note}")
    # A debugger may hold a CPU for minutes: the gateway then waits as long.
    request_timeout = GDB_WAIT if gdb_port is not None else 5.0
    targets: dict[str, Target] = {}
    boots: dict[str, tuple[float, float | None]] = {}  # endpoint -> (monotonic, device time) at boot
    recorded_boots: dict[str, float] = {}
    steps_done = 0
    gw_log = _file_logger("hil.replay.gateway", log_dir / "gateway.log")
    try:
        listen = plan.wiring.get("gateway_listen") or "127.0.0.1"
        async with Gateway(host=listen, port=0, request_timeout=request_timeout, log=gw_log) as gateway:
            untap = tap(gateway, recorder.gateway_sink(gateway.host, gateway.port))
            deployer = Deployer(gateway, timeline=recorder.timeline, activation_timeout=10.0 * (GDB_WAIT if gdb_port is not None else 1.0))
            instances: dict[tuple[str, int], Deployment] = {}  # recorded (endpoint, instance) -> this replay's
            try:
                for step in bundle.timeline:
                    if stop_at is not None and step.index > stop_at:
                        break
                    if step.action == "boot":
                        recorded_boots[step.endpoint] = _recorded_time(bundle, step)
                        target = _make_target(plan, step.endpoint, log_dir, recorder, gdb_port, speed, announce)
                        targets[step.endpoint] = target
                        recorder.add_device(target)
                        await target.__aenter__()
                        boots[step.endpoint] = (time.monotonic(), target.device_time())
                    else:
                        target = targets.get(step.endpoint)
                        if target is None:
                            raise ReplayError(f"step {step.index} acts on {step.endpoint}, which no earlier step booted")
                        await _pace(bundle, step, target, boots[step.endpoint], recorded_boots[step.endpoint])
                        await _perform(step, target, gateway, deployer, plan, instances)
                    steps_done = step.index
                    announce(f"replay: {step.describe()}")
                if stop_at is not None:
                    announce(f"replay: stopped after step {stop_at}; the devices stay up"
                             + (" until interrupted" if hold is None else f" for {hold:g} s"))
                    if hold is None:
                        await asyncio.Event().wait()
                    await asyncio.sleep(hold)
                else:
                    await _await_failure(bundle, targets, boots, recorded_boots, end_grace)
            finally:
                for target in targets.values():
                    recorder.device_stopping(target)
                for target in targets.values():
                    with contextlib.suppress(Exception):
                        await target.__aexit__(None, None, None)
                untap()
                await deployer.channel.close()
    except (TargetError, DeployError, GatewayError, MissingBinaryError, BoardError) as e:
        raise ReplayError(f"replay stopped at step {steps_done + 1}: {e}\n(logs: {log_dir})") from None
    finally:
        for handler in list(gw_log.handlers):
            gw_log.removeHandler(handler)
            handler.close()
    seen = recorder.faults
    bundle_dir = log_dir / "bundle"
    recorder.write(bundle_dir, outcome="replayed")
    return ReplayResult(bundle.failure, seen, steps_done, log_dir, bundle_dir)


def _make_target(plan: ReplayPlan, endpoint: str, log_dir: Path, recorder: Recorder, gdb_port: int | None,
                 speed: float, announce: Callable[[str], None]) -> Target:
    cls = get_target_class(plan.target)
    options = {"sim_speed": speed, "net": plan.bundle.options.get("net") if plan.target == plan.bundle.target else None,
               "gdb_announce": lambda command: announce(f"replay: {endpoint} waits for the debugger; attach with:\n  {command}")}
    config = TargetConfig(endpoint=endpoint, log_dir=log_dir, board=plan.board, firmware=plan.firmware, options=options,
                          serial_port=plan.wiring.get("serial_port"), net_serial_port=plan.wiring.get("net_serial_port"),
                          gateway_host=plan.wiring.get("gateway_host"),
                          timeline=recorder.timeline, capture=recorder.capture, gdb_port=gdb_port)
    return cls(config)


def _recorded_time(bundle: Bundle, step) -> float:
    """A step's time in device seconds as recorded: the device's clock, else the wall clock (QEMU runs in real time)."""
    if step.device_time is not None:
        return step.device_time
    return step.wall_time


async def _pace(bundle: Bundle, step, target: Target, boot: tuple[float, float | None], recorded_boot: float) -> None:
    """Wait until the device is as far past its boot as it was when the step was taken."""
    due = _recorded_time(bundle, step) - recorded_boot
    started, device_at_boot = boot
    while True:
        now = target.device_time()
        if now is not None and device_at_boot is not None:
            elapsed = now - device_at_boot
        else:
            elapsed = (time.monotonic() - started) * target.time_scale
        remaining = due - elapsed
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining / target.time_scale, 0.5))


async def _perform(step, target: Target, gateway: Gateway, deployer: Deployer, plan: ReplayPlan,
                   instances: dict[tuple[str, int], Deployment]) -> None:
    args = step.args
    if step.action == "bootstrap":
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration(step.endpoint, timeout=REGISTRATION_TIMEOUT * target.boot_wait_scale)
    elif step.action == "sensor":
        await target.set_sensor(str(args["name"]), float(args["value"]))
    elif step.action == "input":
        recorded = int(args["instance"])
        deployment = instances.get((step.endpoint, recorded))
        await target.set_service_input(deployment.instance if deployment else recorded, str(args["key"]), args["value"],
                                       manifest=deployment.manifest if deployment else None, gateway=gateway)
    elif step.action == "deploy":
        recorded = int(args["instance"])
        instances[(step.endpoint, recorded)] = await deployer.deploy(plan.packages[args["sha256"]], step.endpoint,
                                                                     instance=recorded)
    elif step.action == "remove":
        recorded = int(args["instance"])
        deployment = instances.pop((step.endpoint, recorded), None)
        await deployer.remove(step.endpoint, deployment.instance if deployment else recorded)
    elif step.action == "reboot":
        await target.reboot()


async def _await_failure(bundle: Bundle, targets: dict[str, Target], boots: dict, recorded_boots: dict,
                         grace: float) -> None:
    """Run on until the recorded fault recurs, or the recorded run's end plus ``grace`` device seconds."""
    expected = bundle.failure
    ends = bundle.end.get("device_time") or {}
    deadline = 0.0
    for endpoint, target in targets.items():
        recorded_end = ends.get(endpoint)
        if recorded_end is None:
            recorded_end = float(bundle.end.get("wall_time") or 0.0)
        due = max(0.0, recorded_end - recorded_boots.get(endpoint, 0.0)) + grace
        started, device_at_boot = boots[endpoint]
        now = target.device_time()
        elapsed = (now - device_at_boot) if now is not None and device_at_boot is not None else \
            (time.monotonic() - started) * target.time_scale
        deadline = max(deadline, time.monotonic() + max(0.0, due - elapsed) / target.time_scale)
    while time.monotonic() < deadline:
        faults = [f for t in targets.values() for f in t.faults.faults]
        if expected is not None and any(f.signature() == expected.signature() for f in faults):
            return
        await asyncio.sleep(0.05)


def _file_logger(name: str, path: Path) -> logging.Logger:
    logger = logging.Logger(name, logging.DEBUG)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger
