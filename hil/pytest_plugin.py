"""pytest plugin: options, markers and fixtures for embServe HIL tests.

Loaded through the ``pytest11`` entry point, so any project that installs
embserve-hil gets it. The fixtures only compose the library:

    registry, broker (session)  -> real docker-registry / mosquitto processes
    gateway                     -> LwM2M gateway on a free loopback port
    board                       -> the selected board file
    node (alias dut)            -> a device from the selected target, booted,
                                   bootstrapped through its shell, registered
    shell                       -> the node's Zephyr-style shell
    lg_place (session)          -> the labgrid place this run (or xdist worker) holds:
                                   reserved and acquired once, always released
    deployer                    -> far-edge deployer through the gateway
    temperature_service         -> the project's temperature service pushed to the registry
    readings                    -> awaits readings from a node's /3303/x/5700
    metrics                     -> execution metrics of the test's nodes (hil.metrics)

With ``--lg-place NAME|PATTERN|LIST`` or ``--lg-env FILE`` the node is a
board on a place of a labgrid lab (target ``labgrid``, the default then):
each run, or each pytest-xdist worker under ``-n N``, reserves and acquires
a place of its own and releases it at the end, also after Ctrl-C, SIGTERM
or a kill (see :mod:`hil.targets.labgrid_place`); the terminal summary says
which place ran which test.

Each test gets its own log directory (console, gateway, and links to the
session's registry and broker logs); a failing test's report names it.

Execution metrics (``--hil-metrics``, the ``hil_metrics`` marker, or a test
that takes the ``metrics`` fixture): the nodes record what they run (the
simulator per service, Renode through its profiler), and after the test its
log directory holds ``metrics.json`` and ``metrics.html`` (plots).

The project using the plugin needs no configuration: the async fixtures are
pytest-asyncio fixtures, and an ``async def`` test marked ``hil`` gets the
``asyncio`` mark at collection, so pytest-asyncio's default (strict) mode
runs it. A missing system tool (docker-registry, mosquitto, qemu-system-arm,
the ARM compiler) fails the test that needs it with one line naming the tool
and its Debian package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Iterator, NoReturn

import pytest
import pytest_asyncio

from .boards import Board, BoardError, get_board
from .infra.process import MissingBinaryError

if TYPE_CHECKING:
    from .faredge.deployer import Deployment
    from .metrics import DeviceMetrics
from .targets.base import (
    BOARD_BACKEND,
    DEFAULT_BOARDS,
    CapabilityMissing,
    Target,
    TargetConfig,
    TargetError,
    TargetUnavailable,
    get_target_class,
    known_targets,
    reference_build,
)
from .targets.errors import TargetConfigError

DEFAULT_BOARD = DEFAULT_BOARDS
LOG_KEY = pytest.StashKey[Path]()
READINGS_KEY = pytest.StashKey[list[str]]()
REPORTS_KEY = pytest.StashKey[dict]()
BUNDLE_DIR = "bundle"
PLACE_PROPERTY = "labgrid place"
METRICS_LINES_KEY = pytest.StashKey[list[str]]()
TARGETS_KEY = pytest.StashKey[list[Target]]()  # on a test item: the targets its fixtures brought up


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("embserve-hil", "embServe hardware-in-the-loop")
    group.addoption("--target", default=None,
                    help=f"device backend: {', '.join(known_targets())} (default $HIL_TARGET, else labgrid with"
                         f" --lg-place/--lg-env, else sim)")
    group.addoption("--board", default=None, help="board name from the catalog (embserve-hil boards)")
    group.addoption("--firmware", default=None, help="firmware ELF for emulated/real boards (default: the board's)")
    group.addoption("--serial-port", default=None, help="serial port or URL (rfc2217://host:port, socket://...) of a real board")
    group.addoption("--net-serial-port", default=None, help="second serial port carrying the board's SLIP network link")
    group.addoption("--gateway-host", default=None, help="gateway address the device is told (default: as the target needs)")
    group.addoption("--gateway-listen", default="127.0.0.1",
                    help="address the gateway listens on (a real board needs one on its network; default 127.0.0.1)")
    group.addoption("--coap", default="", metavar="PARAMS",
                    help="CoAP transmission parameters of the gateway's requests, e.g. ack_timeout=4 for a slow link"
                         " (default RFC 7252: ack_timeout=2,ack_random_factor=1.5,max_retransmit=4; docs/faults.md)")
    group.addoption("--net", default=None, choices=["eth", "slip"],
                    help="how an emulated node reaches the gateway: eth (LAN9118) or slip (UART1 through the SLIP bridge);"
                         " default: the target's choice for the board (QEMU eth, Renode eth if modelled, else slip)")
    group.addoption("--renode-tap", default=None, metavar="TAP",
                    help="Renode target: host TAP device the board's Ethernet reaches the gateway through"
                         " (default: the board file's renode_tap; without one, boards with a SLIP UART use SLIP)")
    group.addoption("--device-time", default="virtual", choices=["virtual", "real"],
                    help="emulated targets (QEMU, Renode): virtual device time, whose idle time is skipped while the"
                         " gateway has nothing in flight with the node (default), or real time at the host's pace")
    group.addoption("--nodes", type=int, default=1, help="number of nodes the `nodes` fixture brings up")
    group.addoption("--deploy-via", default="lwm2m", choices=["lwm2m", "mqtt", "rest"],
                    help="path the deployer takes to the gateway")
    group.addoption("--sim-speed", type=float, default=10.0,
                    help="simulator target: device seconds per wall-clock second (default 10)")
    group.addoption("--hil-log-dir", default=None, help="directory for per-test logs (default .hil-logs/<session>)")
    group.addoption("--hil-show-readings", action="store_true", help="print the readings each test saw")
    group.addoption("--hil-keep-bundles", action="store_true",
                    help="keep every test's replay bundle (default: only those of failed tests)")
    group.addoption("--hil-seed", type=int, default=None,
                    help="seed of the run's random choices (default: a new one per test; recorded in the bundle)")
    group.addoption("--hil-gdb", nargs="?", type=int, const=0, default=None, metavar="PORT",
                    help="start the device halted with a GDB server (a free port unless PORT) and wait for the"
                         " debugger; prints the gdb-multiarch command to attach")
    lab = parser.getgroup("embserve-hil labgrid", "embServe boards on labgrid places (pip install 'embserve-hil[labgrid]')")
    lab.addoption("--lg-place", default=None,
                  help="labgrid place to acquire: a name, a pattern ('k64f-*') or a list ('a,b'); each run or"
                       " xdist worker takes a free one")
    if importlib.util.find_spec("labgrid") is None:
        # labgrid's own pytest plugin defines these two when labgrid is installed; we read the same ones.
        lab.addoption("--lg-env", dest="lg_env", default=None,
                      help="labgrid environment file: its RemotePlace is the place, its drivers are used")
        lab.addoption("--lg-coordinator", dest="lg_coordinator", default=None,
                      help="labgrid coordinator HOST:PORT (default $LG_COORDINATOR, else the environment file's,"
                           " else 127.0.0.1:20408)")
    lab.addoption("--lg-acquire-timeout", type=float, default=300.0,
                  help="seconds to wait in labgrid's queue for a free place (default 300)")
    group.addoption("--hil-metrics", action="store_true",
                    help="record execution metrics of every test's nodes (simulator: per service; Renode: its profiler)"
                         " into metrics.json and metrics.html in the test's log directory")


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in [
        ("hil", "hardware-in-the-loop test; runs on every target"),
        ("sim", "needs only the in-process simulator"),
        ("emulation", "runs an emulator (QEMU or Renode)"),
        ("hardware", "needs a real board"),
        ("requires_renode", "needs the renode binary on PATH"),
        ("hil_metrics", "record the nodes' execution metrics for this test, as --hil-metrics does"),
    ]:
        config.addinivalue_line("markers", f"{marker}: {text}")
    base = config.getoption("--hil-log-dir")
    session_dir = Path(base) if base else Path(".hil-logs") / time.strftime("%Y%m%d-%H%M%S")
    config.stash[LOG_KEY] = session_dir.resolve()
    if _uses_labgrid(config):
        config.pluginmanager.register(_PlaceSummary(), "embserve-hil-labgrid-places")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> None:
    """An ``async def`` test marked ``hil`` (itself, or its class or module) gets the ``asyncio`` mark.

    On the function, before pytest-asyncio looks at the item it becomes, so
    strict mode, pytest-asyncio's default, runs it with no configuration.
    """
    if not inspect.iscoroutinefunction(obj) or not collector.funcnamefilter(name):
        return
    own = getattr(obj, "pytestmark", [])
    names = {m.name for m in (own if isinstance(own, list) else [own])}
    if "asyncio" not in names and ("hil" in names or collector.get_closest_marker("hil") is not None):
        pytest.mark.asyncio(obj)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("renode") is None:
        skip = pytest.mark.skip(reason="renode is not on PATH (install Renode: see README, 'Renode')")
        for item in items:
            if "requires_renode" in item.keywords:
                item.add_marker(skip)


@contextlib.contextmanager
def _missing_capability_skips() -> Iterator[None]:
    """A test that needs what the board lacks (:class:`CapabilityMissing`) is skipped with the reason, not failed."""
    try:
        yield
    except CapabilityMissing as e:
        raise pytest.skip.Exception(str(e), _use_item_location=True) from None


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[object]:
    with _missing_capability_skips():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> Iterator[object]:
    with _missing_capability_skips():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    log_dir = getattr(item, "_hil_log_dir", None)
    failed = report.failed or hasattr(report, "wasxfail")
    if failed and log_dir is not None:
        report.sections.append(("embserve-hil logs", f"logs for this test: {log_dir}"))
        recorder = getattr(item, "_hil_recorder", None)
        if recorder is not None:
            faults = recorder.faults
            if faults and report.when == "call" and report.failed:
                report.longrepr = _with_faults(report.longrepr, faults)
            elif faults:
                report.sections.append(("embserve-hil device faults", "\n".join(f.describe() for f in faults)))
            report.sections.append(("embserve-hil bundle",
                                    f"replay bundle: {log_dir / BUNDLE_DIR}\n"
                                    f"  rerun it: embserve-hil replay {log_dir / BUNDLE_DIR} [--target qemu] [--gdb]"))
    return report


def _with_faults(longrepr: object, faults: list) -> object:
    """The failure message, with the device faults' source lines at its end."""
    text = "\n".join(f"device fault: {f.describe()}" for f in faults)
    if isinstance(longrepr, str):
        return f"{longrepr}\n{text}"
    if hasattr(longrepr, "addsection"):
        longrepr.addsection("device faults (embserve-hil)", text)
    return longrepr


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture(scope="session")
def hil_session_log_dir(pytestconfig: pytest.Config) -> Iterator[Path]:
    path = pytestconfig.stash[LOG_KEY]
    path.mkdir(parents=True, exist_ok=True)
    # Every HIL fixture that starts a process needs this one: from here on a SIGTERM (a CI job's timeout,
    # `kill`) ends the run as Ctrl-C does, so teardown stops the registry, broker, emulators and places
    # instead of leaving them running. Sessions without HIL tests keep pytest's own SIGTERM.
    restore = _sigterm_interrupts()
    try:
        yield path
    finally:
        restore()


@pytest.fixture
def hil_log_dir(request: pytest.FixtureRequest, hil_session_log_dir: Path) -> Path:
    path = hil_session_log_dir / f"{Path(request.node.path).stem}-{_slug(request.node.nodeid)}"
    path.mkdir(parents=True, exist_ok=True)
    request.node._hil_log_dir = path
    for name in ("registry.log", "broker.log"):
        link = path / name
        if (hil_session_log_dir / name).exists() and not link.exists():
            with contextlib.suppress(OSError):
                link.symlink_to(hil_session_log_dir / name)
    return path


def _options(config: pytest.Config) -> dict[str, object]:
    """Every embserve-hil option of this run, as given (for the bundle)."""
    group = config._parser.getgroup("embserve-hil")
    return {opt.dest: config.getoption(opt.dest) for opt in group.options}


@pytest.fixture
def hil_recorder(request: pytest.FixtureRequest, pytestconfig: pytest.Config, hil_log_dir: Path,
                 hil_target_name: str) -> Iterator:
    """The test's replay bundle: always recorded, written to ``<log dir>/bundle`` after the test,
    kept when it failed (or with ``--hil-keep-bundles``)."""
    import random

    from .bundle import Recorder

    seed = pytestconfig.getoption("--hil-seed")
    seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
    random.seed(seed)  # the run's own random choices (e.g. the simulated node's first CoAP message id)
    board = None
    name = pytestconfig.getoption("--board") or DEFAULT_BOARD.get(hil_target_name)
    if name is not None:
        with contextlib.suppress(BoardError):
            board = get_board(name)
    recorder = Recorder(nodeid=request.node.nodeid, target=hil_target_name, board=board,
                        options=_options(pytestconfig), seed=seed)
    request.node._hil_recorder = recorder
    started = time.monotonic()
    yield recorder
    reports = request.node.stash.get(REPORTS_KEY, {})
    outcome, message = _outcome(reports)
    directory = hil_log_dir / BUNDLE_DIR
    if directory.exists():
        shutil.rmtree(directory)
    recorder.write(directory, outcome=outcome, message=message, duration=time.monotonic() - started)
    if outcome in ("passed", "skipped") and not pytestconfig.getoption("--hil-keep-bundles"):
        shutil.rmtree(directory, ignore_errors=True)


def _outcome(reports: dict) -> tuple[str, str]:
    for when in ("setup", "call"):
        report = reports.get(when)
        if report is None:
            continue
        if hasattr(report, "wasxfail"):
            return ("xfailed", report.longreprtext) if report.skipped else ("xpassed", report.wasxfail)
        if report.failed:
            return "failed", report.longreprtext
        if report.skipped:
            return "skipped", report.longreprtext
    return "passed", ""


@pytest.fixture
def hil_test_record(request: pytest.FixtureRequest, hil_log_dir: Path, hil_target_name: str):
    """What this test's report shows: the node, deploy and readings fixtures tell it what happens
    (read by the report side of the plugin, :mod:`hil.pytest_report`)."""
    from .report import TestRecord

    record = TestRecord(request.node.nodeid, target=hil_target_name, log_dir=hil_log_dir)
    request.node._hil_record = record
    return record


def _fail(message: str) -> NoReturn:
    """Fail the test with this one line: no traceback, no exception it was raised while handling."""
    raise pytest.fail.Exception(message, pytrace=False) from None


@contextlib.contextmanager
def _missing_tool_fails() -> Iterator[None]:
    """A missing system tool fails the test with one line (the tool and its Debian package), not a traceback."""
    try:
        yield
    except MissingBinaryError as e:
        _fail(str(e))


def _terminal_line(config: pytest.Config, line: str) -> None:
    """One line on the terminal, past output capture (on stderr where there is no terminal reporter)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        print(line, file=sys.stderr, flush=True)
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def registry(hil_session_log_dir: Path):
    """A real OCI registry (Debian docker-registry) on a free loopback port."""
    from .infra.registry import Registry

    reg = Registry(log_dir=hil_session_log_dir)
    with _missing_tool_fails():
        reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def broker(hil_session_log_dir: Path):
    """A real MQTT broker (mosquitto) on a free loopback port."""
    from .infra.broker import Broker

    b = Broker(log_dir=hil_session_log_dir)
    with _missing_tool_fails():
        b.start()
    try:
        yield b
    finally:
        b.stop()


def _lg_env(config: pytest.Config) -> str | None:
    """``--lg-env`` (labgrid's plugin's option, or ours without labgrid), else ``LG_ENV`` as labgrid reads it."""
    return config.getoption("lg_env", None) or os.environ.get("LG_ENV") or None


def _uses_labgrid(config: pytest.Config) -> bool:
    return bool(config.getoption("--lg-place") or _lg_env(config))


@pytest.fixture
def hil_target_name(pytestconfig: pytest.Config) -> str:
    return (pytestconfig.getoption("--target") or os.environ.get("HIL_TARGET")
            or ("labgrid" if _uses_labgrid(pytestconfig) else "sim"))


@pytest.fixture
def board(pytestconfig: pytest.Config, request: pytest.FixtureRequest, hil_target_name: str) -> Board | None:
    name = pytestconfig.getoption("--board") or DEFAULT_BOARD.get(hil_target_name)
    if name is None and hil_target_name == "labgrid":
        name = request.getfixturevalue("lg_place").board_tag  # the place's tag board=NAME
    if name is None:
        tag = " (or a board=NAME tag on the labgrid place)" if hil_target_name == "labgrid" else ""
        _fail(f"--target {hil_target_name} needs --board NAME{tag} (see `embserve-hil boards`)")
    try:
        chosen = get_board(name)
    except BoardError as e:
        _fail(str(e))
    backend = BOARD_BACKEND.get(hil_target_name, hil_target_name)
    if not chosen.supports(backend):
        _fail(f"board {name!r} cannot run on target {hil_target_name!r}; it supports {', '.join(chosen.backends)}")
    return chosen


@pytest.fixture(scope="session")
def lg_place(pytestconfig: pytest.Config, hil_session_log_dir: Path):
    """The labgrid place this run holds (a :class:`hil.targets.labgrid_place.PlaceLease`), released at the end."""
    from .targets.labgrid_place import LeaseSpec, PlaceError, PlaceLease

    if not _uses_labgrid(pytestconfig):
        _fail("a labgrid place is needed: --lg-place NAME|PATTERN|LIST or --lg-env FILE")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    spec = LeaseSpec(place=pytestconfig.getoption("--lg-place"), env_file=_lg_env(pytestconfig),
                     coordinator=pytestconfig.getoption("lg_coordinator", None),
                     acquire_timeout=pytestconfig.getoption("--lg-acquire-timeout"),
                     log_dir=hil_session_log_dir / (worker or "labgrid"))
    say = (lambda line: print(f"[{worker}] {line}", file=sys.__stderr__, flush=True)) if worker \
        else (lambda line: _terminal_line(pytestconfig, line))
    try:
        with _missing_tool_fails():
            lease = PlaceLease(spec, progress=say)
    except PlaceError as e:
        _fail(str(e))
    restore = _sigterm_interrupts()
    try:
        try:
            lease.acquire()
        except PlaceError as e:
            _fail(str(e))
        yield lease
    finally:
        lease.release()
        restore()


def _sigterm_interrupts():
    """SIGTERM ends the run as Ctrl-C does (teardown runs, the place is released); returns the undo."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def hil_target_options(request: pytest.FixtureRequest, hil_target_name: str) -> dict:
    """Options the selected backend needs from the run: the labgrid place it holds."""
    if hil_target_name != "labgrid":
        return {}
    lease = request.getfixturevalue("lg_place")
    request.node.user_properties.append((PLACE_PROPERTY, lease.place))
    return {"labgrid_place": lease}


@pytest_asyncio.fixture(loop_scope="function")
async def gateway(hil_log_dir: Path, request: pytest.FixtureRequest, hil_recorder) -> AsyncIterator:
    """The LwM2M gateway on a free loopback port, with its northbound APIs when asked for.

    Every datagram on its socket goes into the test's bundle (capture.pcapng).
    """
    import logging

    from .gateway.capture import tap
    from .gateway.server import Gateway

    logger = logging.getLogger(f"hil.gateway.{_slug(request.node.nodeid)}")
    logger.setLevel(logging.DEBUG)
    handler = logging.FileHandler(hil_log_dir / "gateway.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        from .lwm2m.transmission import TransmissionParameters

        try:
            transmission = TransmissionParameters.parse(request.config.getoption("--coap"))
        except ValueError as e:
            _fail(f"--coap: {e}")
        async with Gateway(host=request.config.getoption("--gateway-listen"), port=0, log=logger,
                           transmission=transmission) as gw:
            untap = tap(gw, hil_recorder.gateway_sink(gw.host, gw.port))
            try:
                yield gw
            finally:
                untap()
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.fixture
def hil_target_class(hil_target_name: str) -> type[Target]:
    """The selected backend, once its system tools are known to be there."""
    try:
        cls = get_target_class(hil_target_name)
        cls.check_tools()
    except TargetUnavailable as e:
        pytest.skip(str(e))
    except MissingBinaryError as e:
        _fail(str(e))
    return cls


@pytest.fixture(scope="session")
def hil_reference_firmware(pytestconfig: pytest.Config) -> Callable[[str], Path]:
    """``hil_reference_firmware(board)``: the reference firmware for that board, built from the shipped
    sources into the per-user cache once (then reused)."""
    from .reference_firmware import FirmwareError, reference_firmware

    built: dict[str, Path] = {}

    def for_board(name: str) -> Path:
        if name not in built:
            try:
                built[name] = reference_firmware(board=name, announce=lambda line: _terminal_line(pytestconfig, line))
            except FirmwareError as e:
                _fail(str(e))
        return built[name]

    return for_board


@pytest.fixture
def hil_firmware(pytestconfig: pytest.Config, hil_reference_firmware: Callable[[str], Path],
                 hil_target_class: type[Target], board: Board | None) -> Path | None:
    """The firmware the node runs: ``--firmware``, else the reference firmware's build for the board when
    the board file names it (``firmware = "reference"``)."""
    explicit = pytestconfig.getoption("--firmware")
    if explicit:
        return Path(explicit).resolve()
    if hil_target_class.loads_firmware and board is not None:
        try:
            build = reference_build(board)
        except TargetConfigError as e:
            stop_on_config_error(e)
        if build is not None:
            return hil_reference_firmware(build.board)
    return None  # the target resolves what the board file names, and says so when it is missing


def _metrics_wanted(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--hil-metrics") or request.node.get_closest_marker("hil_metrics")
                or "metrics" in request.fixturenames)


def _target_config(pytestconfig: pytest.Config, board: Board | None, log_dir: Path, endpoint: str,
                   firmware: Path | None, extra: dict | None = None, recorder=None, metrics: bool = False) -> TargetConfig:
    return TargetConfig(
        endpoint=endpoint,
        log_dir=log_dir,
        board=board,
        firmware=firmware,
        serial_port=pytestconfig.getoption("--serial-port"),
        net_serial_port=pytestconfig.getoption("--net-serial-port"),
        gateway_host=pytestconfig.getoption("--gateway-host"),
        options={"sim_speed": pytestconfig.getoption("--sim-speed"), "net": pytestconfig.getoption("--net"),
                 "gdb_announce": lambda command: _terminal_line(
                     pytestconfig, f"embserve-hil: {endpoint} waits for the debugger; attach with:\n  {command}"),
                 "renode_tap": pytestconfig.getoption("--renode-tap"),
                 "virtual_time": pytestconfig.getoption("--device-time") == "virtual", "metrics": metrics, **(extra or {})},
        timeline=recorder.timeline if recorder is not None else None,
        capture=recorder.capture if recorder is not None else None,
        gdb_port=pytestconfig.getoption("--hil-gdb"),
    )


@dataclass
class NodeHandle:
    """A device under test: its target (console, shell) and its gateway registration."""

    endpoint: str
    target: object
    gateway: object
    record: object = None  # the test's TestRecord, told of injected values

    @property
    def console(self):
        return self.target.console

    @property
    def shell(self):
        return self.target.shell

    @property
    def board(self) -> Board:
        """The board file (the target's defaults when there is none): its capabilities and sensor facts."""
        return self.target.board

    @property
    def service_input(self) -> str:
        """How this node's service inputs are written: ``shell``, ``lwm2m`` or ``none``."""
        return self.target.capabilities.service_input

    def can_inject(self, sensor: str) -> bool:
        """The firmware takes injected values for ``sensor`` (``sensor set``)."""
        return self.target.can_inject(sensor)

    def can_set_sensor(self, sensor: str) -> bool:
        """:meth:`set_sensor` works: the bench has a stimulus for ``sensor``, or the firmware takes injected values."""
        return self.target.can_set_sensor(sensor)

    def sensor_tolerance(self, sensor: str) -> float:
        return self.target.sensor_tolerance(sensor)

    async def set_sensor(self, name: str, value: float) -> None:
        """Put ``value`` on the sensor (stimulus or injection); skips the test when the board can do neither."""
        if self.record is not None:
            self.record.injected(self.endpoint, name, value)
        await self.target.set_sensor(name, value)

    async def set_service_input(self, service: "Deployment | int", key: str, value: float | int) -> list[str]:
        """Write a service input the way the board file says (``service_input``); skips the test when it has none.

        ``service``: the :class:`~hil.faredge.deployer.Deployment` (needed for
        LwM2M, whose resource the manifest names) or its instance. Returns what
        the console printed for a shell command.
        """
        instance = service if isinstance(service, int) else service.instance
        manifest = None if isinstance(service, int) else service.manifest
        if self.record is not None:
            self.record.service_input(self.endpoint, instance, key, value)
        return await self.target.set_service_input(instance, key, value, manifest=manifest, gateway=self.gateway)

    async def sleep_device(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass."""
        await self.target.sleep_device(seconds)

    @property
    def time_scale(self) -> float:
        return self.target.time_scale


def stop_on_config_error(error: TargetConfigError) -> NoReturn:
    """A configuration that cannot work fails every test the same way: end the session with one line."""
    pytest.exit(f"embserve-hil: {error}", returncode=pytest.ExitCode.USAGE_ERROR)


async def bring_up_node(target_name: str, config: TargetConfig, gateway, timeout: float = 30.0, recorder=None):
    """Start a target, bootstrap it through its shell, wait for its registration."""
    try:
        cls = get_target_class(target_name)
    except TargetUnavailable as e:
        pytest.skip(str(e))
    try:
        target = cls(config)
        target.check_config()
    except TargetConfigError as e:
        stop_on_config_error(e)
    if recorder is not None:
        recorder.add_device(target)
    try:
        await target.__aenter__()
    except (BoardError, MissingBinaryError) as e:
        _fail(str(e))  # bad board file input, or a missing tool: one line
    # Idle device time may be skipped from now on, whenever the gateway has nothing in flight with the node.
    target.govern_time(gateway.in_flight)
    try:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration(config.endpoint, timeout=timeout)
    except BaseException:
        await target.__aexit__(None, None, None)
        raise
    return target


@pytest_asyncio.fixture(loop_scope="function")
async def node(pytestconfig: pytest.Config, request: pytest.FixtureRequest, hil_target_name: str, board,
               hil_firmware: Path | None, gateway, hil_log_dir: Path, hil_target_options: dict, hil_test_record,
               hil_recorder) -> AsyncIterator[NodeHandle]:
    """One device from the selected target, booted, bootstrapped and registered to ``gateway``."""
    config = _target_config(pytestconfig, board, hil_log_dir, "node1", hil_firmware, hil_target_options, hil_recorder,
                            metrics=_metrics_wanted(request))
    try:
        target = await bring_up_node(hil_target_name, config, gateway, timeout=_registration_timeout(config),
                                     recorder=hil_recorder)
    except TargetUnavailable as e:
        pytest.skip(str(e))
    hil_test_record.node_started(target)
    request.node.stash.setdefault(TARGETS_KEY, []).append(target)
    try:
        yield NodeHandle(config.endpoint, target, gateway, hil_test_record)
    finally:
        hil_recorder.device_stopping(target)
        await target.__aexit__(None, None, None)
        await _record_metrics(request, hil_log_dir, [target])


def _registration_timeout(config: TargetConfig) -> float:
    from .targets.base import GDB_WAIT

    return 30.0 * (GDB_WAIT if config.gdb_port is not None else 1.0)


@pytest.fixture
def dut(node: NodeHandle) -> NodeHandle:
    """Alias of ``node``: the device under test."""
    return node


@pytest.fixture
def shell(node: NodeHandle):
    return node.shell


@pytest_asyncio.fixture(loop_scope="function")
async def nodes(pytestconfig: pytest.Config, request: pytest.FixtureRequest, hil_target_name: str, board,
                hil_firmware: Path | None, gateway, hil_log_dir: Path, hil_target_options: dict, hil_test_record,
                hil_recorder) -> AsyncIterator[list[NodeHandle]]:
    """``--nodes`` devices of the selected target, all registered."""
    import asyncio

    count = pytestconfig.getoption("--nodes")
    if count > 1 and "labgrid_place" in hil_target_options:
        _fail(f"--nodes {count}: a run holds one labgrid place (one board); spread tests over places with -n N instead")
    metrics = _metrics_wanted(request)
    configs = [_target_config(pytestconfig, board, hil_log_dir, f"node{i}", hil_firmware, hil_target_options, hil_recorder,
                              metrics=metrics)
               for i in range(1, count + 1)]
    results = await asyncio.gather(*(bring_up_node(hil_target_name, c, gateway, recorder=hil_recorder) for c in configs),
                                   return_exceptions=True)
    started = [r for r in results if not isinstance(r, BaseException)]
    request.node.stash.setdefault(TARGETS_KEY, []).extend(started)
    try:
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        for t in started:
            hil_test_record.node_started(t)
        yield [NodeHandle(c.endpoint, t, gateway, hil_test_record) for c, t in zip(configs, started)]
    finally:
        for t in started:
            hil_recorder.device_stopping(t)
            await t.__aexit__(None, None, None)
        await _record_metrics(request, hil_log_dir, started)


# --------------------------------------------------------------------------- execution metrics

NODE_METRICS_KEY = pytest.StashKey[dict[str, "DeviceMetrics"]]()


async def _record_metrics(request: pytest.FixtureRequest, log_dir: Path, targets: list[Target]) -> None:
    """After the nodes stopped: their metrics (complete now) into metrics.json and metrics.html of the test."""
    from .metrics import MetricsUnavailable, write_metrics_json
    from .metrics.plot import write_metrics_page

    recorded = request.node.stash.setdefault(NODE_METRICS_KEY, {})
    for target in targets:
        if target.metrics_enabled:
            with contextlib.suppress(MetricsUnavailable):  # e.g. the node stopped before its profiler started
                recorded[target.endpoint] = await target.metrics()
    if not recorded:
        return
    write_metrics_json(log_dir / "metrics.json", recorded)
    write_metrics_page(log_dir / "metrics.html", recorded, f"execution metrics: {request.node.nodeid}")
    lines = request.config.stash.setdefault(METRICS_LINES_KEY, [])
    lines.append(f"{request.node.name}: {log_dir / 'metrics.html'}")
    for metrics in recorded.values():
        lines.append("    " + _one_line(metrics))


def _one_line(metrics: DeviceMetrics) -> str:
    if metrics.source == "simulator":
        parts = []
        for name, cost in metrics.services.items():
            periods = cost.kinds.get("period")
            calls = ", ".join(f"{call} {n}" for call, n in sorted(cost.calls.items()))
            most = f"{periods.most:,} instructions per period (most)" if periods else "no complete period"
            parts.append(f"{name}: {most}; SDK calls {calls or 'none'}")
        return f"{metrics.endpoint} (simulator, {metrics.duration:.1f} s): " + ("; ".join(parts) or "no service ran")
    instructions = sum(s.total for s in metrics.instruction_series.values())
    rate = instructions / metrics.duration if metrics.duration else 0.0
    accesses = ", ".join(f"{name} {sum(s.total for s in kinds.values()):,}" for name, kinds in metrics.peripheral_series.items())
    exceptions = sum(s.total for s in metrics.exception_series.values())
    return (f"{metrics.endpoint} ({metrics.source}, {metrics.duration:.1f} s): {instructions:,} instructions ({rate:,.0f}/s),"
            f" peripheral accesses {accesses or 'none'}, exceptions {exceptions:,}" + "".join(f"; {n}" for n in metrics.notes))


class HilMetrics:
    """The ``metrics`` fixture: ``m = await metrics.collect(node)``, then ``m.instructions_per_period(...)``."""

    def __init__(self, item: pytest.Item):
        self._item = item

    async def collect(self, node: NodeHandle | str | None = None) -> DeviceMetrics:
        """The node's metrics so far (:class:`hil.metrics.DeviceMetrics`); ``node`` may be left out when there is one."""
        targets = self._item.stash.get(TARGETS_KEY, [])
        if isinstance(node, NodeHandle):
            node = node.endpoint
        chosen = [t for t in targets if node is None or t.endpoint == node]
        if len(chosen) != 1:
            have = ", ".join(t.endpoint for t in targets) or "none yet"
            which = "name one" if node is None and targets else f"no node {node!r}"
            raise LookupError(f"metrics.collect({node!r}): {which} (this test's nodes: {have})")
        return await chosen[0].metrics()


@pytest.fixture
def metrics(request: pytest.FixtureRequest, hil_target_class: type[Target]) -> HilMetrics:
    """Execution metrics of this test's nodes; taking it turns them on. Skips on a target that records none."""
    if not hil_target_class.metrics_source:
        pytest.skip(f"the {hil_target_class.name} target records no execution metrics (the simulator and Renode do)")
    return HilMetrics(request.node)


@pytest.fixture
def service_cache(hil_log_dir: Path) -> Path:
    path = hil_log_dir / "oci-cache"
    path.mkdir(exist_ok=True)
    return path


@dataclass
class NorthboundApis:
    """Where the gateway's northbound APIs listen (those the test asked for)."""

    mqtt: tuple[str, int] | None = None  # the broker the SDF bridge serves requests on
    rest_url: str | None = None


@pytest_asyncio.fixture(loop_scope="function")
async def gateway_apis(pytestconfig: pytest.Config, request: pytest.FixtureRequest, gateway) -> AsyncIterator[NorthboundApis]:
    """The gateway's SDF/MQTT bridge or REST API, as ``--deploy-via`` needs them (none for lwm2m)."""
    via = pytestconfig.getoption("--deploy-via")
    apis = NorthboundApis()
    if via == "mqtt":
        from .gateway.sdf_mqtt import SdfMqttBridge

        broker = request.getfixturevalue("broker")
        async with SdfMqttBridge(gateway, broker.host, broker.port, log=gateway.log):
            apis.mqtt = (broker.host, broker.port)
            yield apis
    elif via == "rest":
        from .gateway.rest import RestApi

        async with RestApi(gateway, log=gateway.log) as api:
            apis.rest_url = api.url
            yield apis
    else:
        yield apis


@pytest_asyncio.fixture(loop_scope="function")
async def deployer(pytestconfig: pytest.Config, gateway, gateway_apis: NorthboundApis, registry, service_cache: Path,
                   hil_test_record, hil_recorder):
    """The far-edge deployer: resolve from the registry, deploy through the gateway by ``--deploy-via``."""
    from .faredge.deployer import Deployer

    via = pytestconfig.getoption("--deploy-via")
    async with Deployer(gateway, cache_dir=service_cache, via=via, broker=gateway_apis.mqtt,
                        rest_url=gateway_apis.rest_url, timeline=hil_recorder.timeline) as d:
        d.listeners.append(hil_test_record.deployed)
        yield d


def _build_shipped_service(name: str, log_dir: Path) -> Path:
    """``service.json`` of one of the project's own services, built from the C sources shipped with embserve-hil
    (its ELF with debug information beside it)."""
    from .resources import service_dir
    from .sdk import BuildError, build_service

    try:
        return build_service(service_dir(name), log_dir / "services" / name)
    except BuildError as e:
        _fail(str(e))  # e.g. the ARM compiler is missing: one line naming its package


def _push_service(registry, service_json: Path, name: str) -> str:
    """Reference of ``service_json`` pushed to ``registry`` as an OCI artifact."""
    import asyncio

    from .faredge import oci

    ref = f"{registry.address}/embserve/{name}:1"
    asyncio.run(oci.push_artifact(service_json, ref))  # push is a coroutine
    return ref


@pytest.fixture(scope="session")
def temperature_service_json(hil_session_log_dir: Path) -> Path:
    """The project's own temperature_sensor service, built from the C sources shipped with embserve-hil."""
    return _build_shipped_service("temperature_sensor", hil_session_log_dir)


@pytest.fixture(scope="session")
def temperature_service(registry, temperature_service_json: Path) -> str:
    """Reference of the temperature service pushed to ``registry`` as an OCI artifact."""
    return _push_service(registry, temperature_service_json, "temperature_sensor")


@pytest.fixture(scope="session")
def thermostat_service(registry, hil_session_log_dir: Path) -> str:
    """Reference of the project's thermostat service (its input mapped to Set Point Value), pushed to ``registry``."""
    return _push_service(registry, _build_shipped_service("thermostat", hil_session_log_dir), "thermostat")


@pytest.fixture(scope="session")
def faulty_sensor_service(registry, hil_session_log_dir: Path) -> str:
    """Reference of the sample bug service (services/faulty_sensor) pushed to ``registry``."""
    return _push_service(registry, _build_shipped_service("faulty_sensor", hil_session_log_dir), "faulty_sensor")


@pytest.fixture
def readings(request: pytest.FixtureRequest, gateway, hil_test_record):
    """Factory: ``async with readings(node) as r: values = await r.wait(3, timeout=...)``."""
    from .readings import ReadingCollector

    show = request.config.getoption("--hil-show-readings")
    collectors: list[ReadingCollector] = []

    def make(node: NodeHandle | str, path: str | None = None, **kwargs) -> ReadingCollector:
        if isinstance(node, str):
            c = ReadingCollector(gateway, node, path, **kwargs)
        else:
            # Readings carry the device time their message left at, when the target's clock saw it leave.
            if node.target.has_device_time:
                kwargs.setdefault("device_time", node.target.device_time_of)
            c = ReadingCollector(gateway, node.endpoint, path, **kwargs)
        collectors.append(c)
        hil_test_record.watch(c)
        return c

    yield make
    if show:
        summaries = request.config.stash.setdefault(READINGS_KEY, [])
        summaries.extend(f"{request.node.name}: {c.summary()}" for c in collectors)


class _PlaceSummary:
    """Which labgrid place ran which test; under xdist the workers' reports arrive in the controller."""

    def __init__(self) -> None:
        self.places: dict[str, list[str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        place = next((value for key, value in report.user_properties if key == PLACE_PROPERTY), None)
        if place is not None and (report.when == "call" or (report.when == "setup" and not report.passed)):
            self.places.setdefault(place, []).append(f"{report.nodeid} {report.outcome}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.places:
            terminalreporter.section("labgrid places")
            for place, tests in sorted(self.places.items()):
                for test in tests:
                    terminalreporter.write_line(f"{place}: {test}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """With --hil-show-readings: what each test's node reported, after the run; and where metrics went."""
    for key, title in ((READINGS_KEY, "embServe readings"), (METRICS_LINES_KEY, "embServe execution metrics")):
        lines = config.stash.get(key, [])
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
