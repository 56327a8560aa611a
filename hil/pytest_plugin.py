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

With ``--lg-place NAME|PATTERN|LIST`` or ``--lg-env FILE`` the node is a
board on a place of a labgrid lab (target ``labgrid``, the default then):
each run, or each pytest-xdist worker under ``-n N``, reserves and acquires
a place of its own and releases it at the end, also after Ctrl-C, SIGTERM
or a kill (see :mod:`hil.targets.labgrid_place`); the terminal summary says
which place ran which test.

Each test gets its own log directory (console, gateway, and links to the
session's registry and broker logs); a failing test's report names it.

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
from typing import TYPE_CHECKING, AsyncIterator, Iterator, NoReturn

import pytest
import pytest_asyncio

from .boards import Board, BoardError, get_board
from .infra.process import MissingBinaryError

if TYPE_CHECKING:
    from .faredge.deployer import Deployment
from .targets.base import (
    CapabilityMissing,
    Target,
    TargetConfig,
    TargetError,
    TargetUnavailable,
    get_target_class,
    known_targets,
)

DEFAULT_BOARD = {"sim": "sim", "qemu": "mps2_an385", "renode": "mps2_an385", "serial": None, "labgrid": None}
#: a board on a labgrid place is a board on a serial port
BOARD_BACKEND = {"labgrid": "serial"}
LOG_KEY = pytest.StashKey[Path]()
READINGS_KEY = pytest.StashKey[list[str]]()
PLACE_PROPERTY = "labgrid place"


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
    group.addoption("--nodes", type=int, default=1, help="number of nodes the `nodes` fixture brings up")
    group.addoption("--deploy-via", default="lwm2m", choices=["lwm2m", "mqtt", "rest"],
                    help="path the deployer takes to the gateway")
    group.addoption("--sim-speed", type=float, default=10.0,
                    help="simulator target: device seconds per wall-clock second (default 10)")
    group.addoption("--hil-log-dir", default=None, help="directory for per-test logs (default .hil-logs/<session>)")
    group.addoption("--hil-show-readings", action="store_true", help="print the readings each test saw")
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


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in [
        ("hil", "hardware-in-the-loop test; runs on every target"),
        ("sim", "needs only the in-process simulator"),
        ("emulation", "runs an emulator (QEMU or Renode)"),
        ("hardware", "needs a real board"),
        ("requires_renode", "needs the renode binary on PATH"),
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
    log_dir = getattr(item, "_hil_log_dir", None)
    if report.failed and log_dir is not None:
        report.sections.append(("embserve-hil logs", f"logs for this test: {log_dir}"))
    return report


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture(scope="session")
def hil_session_log_dir(pytestconfig: pytest.Config) -> Path:
    path = pytestconfig.stash[LOG_KEY]
    path.mkdir(parents=True, exist_ok=True)
    return path


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
async def gateway(hil_log_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator:
    """The LwM2M gateway on a free loopback port, with its northbound APIs when asked for."""
    import logging

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
            yield gw
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
def hil_reference_firmware(pytestconfig: pytest.Config) -> Path:
    """The reference firmware, built from the shipped sources into the per-user cache once (then reused)."""
    from .reference_firmware import FirmwareError, reference_firmware

    try:
        return reference_firmware(announce=lambda line: _terminal_line(pytestconfig, line))
    except FirmwareError as e:
        _fail(str(e))


@pytest.fixture
def hil_firmware(pytestconfig: pytest.Config, request: pytest.FixtureRequest, hil_target_class: type[Target],
                 board: Board | None) -> Path | None:
    """The firmware the node runs: ``--firmware``, else the reference firmware when the board file names it."""
    explicit = pytestconfig.getoption("--firmware")
    if explicit:
        return Path(explicit).resolve()
    if hil_target_class.loads_firmware and board is not None and board.uses_reference_firmware:
        return request.getfixturevalue("hil_reference_firmware")
    return None  # the target resolves what the board file names, and says so when it is missing


def _target_config(pytestconfig: pytest.Config, board: Board | None, log_dir: Path, endpoint: str,
                   firmware: Path | None, extra: dict | None = None) -> TargetConfig:
    return TargetConfig(
        endpoint=endpoint,
        log_dir=log_dir,
        board=board,
        firmware=firmware,
        serial_port=pytestconfig.getoption("--serial-port"),
        net_serial_port=pytestconfig.getoption("--net-serial-port"),
        gateway_host=pytestconfig.getoption("--gateway-host"),
        options={"sim_speed": pytestconfig.getoption("--sim-speed"), "net": pytestconfig.getoption("--net"),
                 **(extra or {})},
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


async def bring_up_node(target_name: str, config: TargetConfig, gateway, timeout: float = 30.0):
    """Start a target, bootstrap it through its shell, wait for its registration."""
    try:
        cls = get_target_class(target_name)
    except TargetUnavailable as e:
        pytest.skip(str(e))
    target = cls(config)
    try:
        await target.__aenter__()
    except (BoardError, MissingBinaryError) as e:
        _fail(str(e))  # bad board file input, or a missing tool: one line
    try:
        await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
        await gateway.wait_for_registration(config.endpoint, timeout=timeout)
    except BaseException:
        await target.__aexit__(None, None, None)
        raise
    return target


@pytest_asyncio.fixture(loop_scope="function")
async def node(pytestconfig: pytest.Config, hil_target_name: str, board, hil_firmware: Path | None, gateway,
               hil_log_dir: Path, hil_target_options: dict, hil_test_record) -> AsyncIterator[NodeHandle]:
    """One device from the selected target, booted, bootstrapped and registered to ``gateway``."""
    config = _target_config(pytestconfig, board, hil_log_dir, "node1", hil_firmware, hil_target_options)
    try:
        target = await bring_up_node(hil_target_name, config, gateway)
    except TargetUnavailable as e:
        pytest.skip(str(e))
    hil_test_record.node_started(target)
    try:
        yield NodeHandle(config.endpoint, target, gateway, hil_test_record)
    finally:
        await target.__aexit__(None, None, None)


@pytest.fixture
def dut(node: NodeHandle) -> NodeHandle:
    """Alias of ``node``: the device under test."""
    return node


@pytest.fixture
def shell(node: NodeHandle):
    return node.shell


@pytest_asyncio.fixture(loop_scope="function")
async def nodes(pytestconfig: pytest.Config, hil_target_name: str, board, hil_firmware: Path | None, gateway,
                hil_log_dir: Path, hil_target_options: dict, hil_test_record) -> AsyncIterator[list[NodeHandle]]:
    """``--nodes`` devices of the selected target, all registered."""
    import asyncio

    count = pytestconfig.getoption("--nodes")
    if count > 1 and "labgrid_place" in hil_target_options:
        _fail(f"--nodes {count}: a run holds one labgrid place (one board); spread tests over places with -n N instead")
    configs = [_target_config(pytestconfig, board, hil_log_dir, f"node{i}", hil_firmware, hil_target_options)
               for i in range(1, count + 1)]
    results = await asyncio.gather(*(bring_up_node(hil_target_name, c, gateway) for c in configs), return_exceptions=True)
    started = [r for r in results if not isinstance(r, BaseException)]
    try:
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        for t in started:
            hil_test_record.node_started(t)
        yield [NodeHandle(c.endpoint, t, gateway, hil_test_record) for c, t in zip(configs, started)]
    finally:
        for t in started:
            await t.__aexit__(None, None, None)


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
                   hil_test_record):
    """The far-edge deployer: resolve from the registry, deploy through the gateway by ``--deploy-via``."""
    from .faredge.deployer import Deployer

    via = pytestconfig.getoption("--deploy-via")
    async with Deployer(gateway, cache_dir=service_cache, via=via, broker=gateway_apis.mqtt,
                        rest_url=gateway_apis.rest_url) as d:
        d.listeners.append(hil_test_record.deployed)
        yield d


def _build_shipped_service(name: str, log_dir: Path) -> Path:
    """``service.json`` of one of the project's own services, built from the C sources shipped with embserve-hil."""
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


@pytest.fixture
def readings(request: pytest.FixtureRequest, gateway, hil_test_record):
    """Factory: ``async with readings(node) as r: values = await r.wait(3, timeout=...)``."""
    from .readings import ReadingCollector

    show = request.config.getoption("--hil-show-readings")
    collectors: list[ReadingCollector] = []

    def make(node: NodeHandle | str, path: str | None = None, **kwargs) -> ReadingCollector:
        ep = node if isinstance(node, str) else node.endpoint
        c = ReadingCollector(gateway, ep, path, **kwargs)
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
    """With --hil-show-readings: what each test's node reported, after the run."""
    lines = config.stash.get(READINGS_KEY, [])
    if lines:
        terminalreporter.section("embServe readings")
        for line in lines:
            terminalreporter.write_line(line)
