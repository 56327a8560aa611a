"""pytest plugin: options, markers and fixtures for embServe HIL tests.

Loaded through the ``pytest11`` entry point, so any project that installs
embserve-hil gets it. The fixtures only compose the library:

    registry, broker (session)  -> real docker-registry / mosquitto processes
    gateway                     -> LwM2M gateway on a free loopback port
    board                       -> the selected board file
    node (alias dut)            -> a device from the selected target, booted,
                                   bootstrapped through its shell, registered
    shell                       -> the node's Zephyr-style shell
    deployer                    -> far-edge deployer through the gateway
    temperature_service         -> the project's temperature service pushed to the registry
    readings                    -> awaits readings from a node's /3303/x/5700
    metrics                     -> execution metrics of the test's nodes (hil.metrics)

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
    from .metrics import DeviceMetrics
from .targets.base import (
    CapabilityMissing,
    Target,
    TargetConfig,
    TargetError,
    TargetUnavailable,
    get_target_class,
    known_targets,
)

DEFAULT_BOARD = {"sim": "sim", "qemu": "mps2_an385", "renode": "mps2_an385", "serial": None}
LOG_KEY = pytest.StashKey[Path]()
READINGS_KEY = pytest.StashKey[list[str]]()
METRICS_LINES_KEY = pytest.StashKey[list[str]]()
TARGETS_KEY = pytest.StashKey[list[Target]]()  # on a test item: the targets its fixtures brought up


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("embserve-hil", "embServe hardware-in-the-loop")
    group.addoption("--target", default=os.environ.get("HIL_TARGET", "sim"),
                    help=f"device backend: {', '.join(known_targets())} (default sim)")
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


@pytest.fixture
def hil_target_name(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("--target")


@pytest.fixture
def board(pytestconfig: pytest.Config, hil_target_name: str) -> Board | None:
    name = pytestconfig.getoption("--board") or DEFAULT_BOARD.get(hil_target_name)
    if name is None:
        _fail(f"--target {hil_target_name} needs --board NAME (see `embserve-hil boards`)")
    try:
        chosen = get_board(name)
    except BoardError as e:
        _fail(str(e))
    if not chosen.supports(hil_target_name):
        _fail(f"board {name!r} cannot run on target {hil_target_name!r}; it supports {', '.join(chosen.backends)}")
    return chosen


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


def _metrics_wanted(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--hil-metrics") or request.node.get_closest_marker("hil_metrics")
                or "metrics" in request.fixturenames)


def _target_config(pytestconfig: pytest.Config, board: Board | None, log_dir: Path, endpoint: str,
                   firmware: Path | None, metrics: bool = False) -> TargetConfig:
    return TargetConfig(
        endpoint=endpoint,
        log_dir=log_dir,
        board=board,
        firmware=firmware,
        serial_port=pytestconfig.getoption("--serial-port"),
        net_serial_port=pytestconfig.getoption("--net-serial-port"),
        gateway_host=pytestconfig.getoption("--gateway-host"),
        options={"sim_speed": pytestconfig.getoption("--sim-speed"), "net": pytestconfig.getoption("--net"),
                 "metrics": metrics},
    )


@dataclass
class NodeHandle:
    """A device under test: its target (console, shell) and its gateway registration."""

    endpoint: str
    target: object
    gateway: object

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
        await self.target.set_sensor(name, value)

    async def set_service_input(self, service: "Deployment | int", key: str, value: float | int) -> list[str]:
        """Write a service input the way the board file says (``service_input``); skips the test when it has none.

        ``service``: the :class:`~hil.faredge.deployer.Deployment` (needed for
        LwM2M, whose resource the manifest names) or its instance. Returns what
        the console printed for a shell command.
        """
        instance = service if isinstance(service, int) else service.instance
        manifest = None if isinstance(service, int) else service.manifest
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
async def node(pytestconfig: pytest.Config, request: pytest.FixtureRequest, hil_target_name: str, board,
               hil_firmware: Path | None, gateway, hil_log_dir: Path) -> AsyncIterator[NodeHandle]:
    """One device from the selected target, booted, bootstrapped and registered to ``gateway``."""
    config = _target_config(pytestconfig, board, hil_log_dir, "node1", hil_firmware, _metrics_wanted(request))
    try:
        target = await bring_up_node(hil_target_name, config, gateway)
    except TargetUnavailable as e:
        pytest.skip(str(e))
    request.node.stash.setdefault(TARGETS_KEY, []).append(target)
    try:
        yield NodeHandle(config.endpoint, target, gateway)
    finally:
        await target.__aexit__(None, None, None)
        await _record_metrics(request, hil_log_dir, [target])


@pytest.fixture
def dut(node: NodeHandle) -> NodeHandle:
    """Alias of ``node``: the device under test."""
    return node


@pytest.fixture
def shell(node: NodeHandle):
    return node.shell


@pytest_asyncio.fixture(loop_scope="function")
async def nodes(pytestconfig: pytest.Config, request: pytest.FixtureRequest, hil_target_name: str, board,
                hil_firmware: Path | None, gateway, hil_log_dir: Path) -> AsyncIterator[list[NodeHandle]]:
    """``--nodes`` devices of the selected target, all registered."""
    import asyncio

    count = pytestconfig.getoption("--nodes")
    metrics = _metrics_wanted(request)
    configs = [_target_config(pytestconfig, board, hil_log_dir, f"node{i}", hil_firmware, metrics)
               for i in range(1, count + 1)]
    results = await asyncio.gather(*(bring_up_node(hil_target_name, c, gateway) for c in configs), return_exceptions=True)
    started = [r for r in results if not isinstance(r, BaseException)]
    request.node.stash.setdefault(TARGETS_KEY, []).extend(started)
    try:
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        yield [NodeHandle(c.endpoint, t, gateway) for c, t in zip(configs, started)]
    finally:
        for t in started:
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
async def deployer(pytestconfig: pytest.Config, gateway, gateway_apis: NorthboundApis, registry, service_cache: Path):
    """The far-edge deployer: resolve from the registry, deploy through the gateway by ``--deploy-via``."""
    from .faredge.deployer import Deployer

    via = pytestconfig.getoption("--deploy-via")
    async with Deployer(gateway, cache_dir=service_cache, via=via, broker=gateway_apis.mqtt,
                        rest_url=gateway_apis.rest_url) as d:
        yield d


@pytest.fixture(scope="session")
def temperature_service_json(hil_session_log_dir: Path) -> Path:
    """The project's own temperature_sensor service, built from the C sources shipped with embserve-hil."""
    from .resources import service_dir
    from .sdk import BuildError, build_service

    try:
        return build_service(service_dir("temperature_sensor"), hil_session_log_dir / "services" / "temperature_sensor")
    except BuildError as e:
        _fail(str(e))  # e.g. the ARM compiler is missing: one line naming its package


@pytest.fixture(scope="session")
def temperature_service(registry, temperature_service_json: Path) -> str:
    """Reference of the temperature service pushed to ``registry`` as an OCI artifact."""
    import asyncio

    from .faredge import oci

    ref = f"{registry.address}/embserve/temperature_sensor:1"
    asyncio.run(oci.push_artifact(temperature_service_json, ref))  # push is a coroutine
    return ref


@pytest.fixture
def readings(request: pytest.FixtureRequest, gateway):
    """Factory: ``async with readings(node) as r: values = await r.wait(3, timeout=...)``."""
    from .readings import ReadingCollector

    show = request.config.getoption("--hil-show-readings")
    collectors: list[ReadingCollector] = []

    def make(node: NodeHandle | str, path: str | None = None, **kwargs) -> ReadingCollector:
        ep = node if isinstance(node, str) else node.endpoint
        c = ReadingCollector(gateway, ep, path, **kwargs)
        collectors.append(c)
        return c

    yield make
    if show:
        summaries = request.config.stash.setdefault(READINGS_KEY, [])
        summaries.extend(f"{request.node.name}: {c.summary()}" for c in collectors)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """With --hil-show-readings: what each test's node reported, after the run; and where metrics went."""
    for key, title in ((READINGS_KEY, "embServe readings"), (METRICS_LINES_KEY, "embServe execution metrics")):
        lines = config.stash.get(key, [])
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
