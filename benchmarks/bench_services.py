"""Issue 3: simulated nodes each running the temperature service, in one process.

Everything is real: one :class:`Gateway` and N :class:`Node` s in this
process; each node gets ``services/temperature_sensor`` over LwM2M (create
/9/1000, write the package, install, activate) and then the input
``rate = 1000`` ms.

1. Per node: peak RSS delta / N, and host CPU per node per second (process CPU
   time over the measured window / N / window).
2. Real time at a 1 s period: the fleet grows through a ladder of node counts;
   at each step, after every new node has left its first (30 s) sleep, a
   window counts the readings the services publish (object store listener on
   every node; gateway observations on a sample of nodes) and the interval
   between consecutive readings of one service (1 s plus wake-up lateness). A
   count is *sustained* when >= 99 % of the expected readings (N per second)
   arrive and the p99 interval is <= 1.1 s; the ladder stops at the first step
   that is not. The service sleeps 1 s *after* its work, so lateness also
   lowers the reading rate: a p50 interval of 1003 ms gives 99.7 %.
3. Virtual time: one node and 100 nodes on a manual clock advance one
   simulated hour, at the service's default 30 s period and at 1 s, timed
   from the end of the first 30 s sleep. Timers include the nodes'
   registration Updates (lifetime 300 s), real CoAP exchanges with the gateway.

    python -m benchmarks services
    BENCH_NODES=250,500 BENCH_WINDOW=10 python -m benchmarks services
    BENCH_VIRTUAL_NODES=1,10 BENCH_VIRTUAL_WAKES=10000 python -m benchmarks services
    BENCH_RECORD=1 python -m benchmarks services     # with recording, as every HIL test has it

BENCH_RECORD=1 records as a test's bundle does (issue 14): every datagram of
the gateway's socket goes into a capture held in memory. Compare two runs
with the same settings, one with and one without. BENCH_RECORD=ab runs only
the virtual-time part, each fleet alternately without and with recording
(BENCH_AB_ROUNDS pairs, default 3), and prints the medians side by side:
the same work under the same machine load, so the difference is recording's.

BENCH_NODES is the ladder (default 500,1000,2000), BENCH_WINDOW the measured
seconds per step (20), BENCH_VIRTUAL_NODES the fleet sizes on a manual clock
(1,100) and BENCH_VIRTUAL_WAKES the most service wake-ups one virtual run
emulates (20000): a longer run is shortened to whole simulated minutes and its
wall time scaled to the hour, as the output says.

The service starts with a 30 s period, and a new rate only applies after the
current sleep, so each ladder step waits ~30 s before its window opens.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path as FilePath

from hil.device.clock import VirtualClock
from hil.device.node import Node
from hil.device.objects import Change
from hil.metrics.cost import PERIOD
from hil.service.runtime import ServiceState
from hil.gateway.capture import tap
from hil.gateway.server import Gateway
from hil.net.capture import PacketCapture
from hil.lwm2m.model import Path
from hil.sdk import build_service

REPO = FilePath(__file__).resolve().parents[1]
RECORD = os.environ.get("BENCH_RECORD") == "1"
AB = os.environ.get("BENCH_RECORD") == "ab"
SERVICE_DIR = REPO / "services" / "temperature_sensor"
INSTANCE = 1000
READING = Path(3303, 0, 5700)  # where the service's `value` output lands
FAST_RATE_MS = 1000
DEFAULT_PERIOD_S = 30.0  # the service's period before any `rate` input
DEPLOY_CONCURRENCY = 64
CLOSE_BATCH = 250
OBSERVED_SAMPLE = 20
SIMULATED_HOUR = 3600.0
SUSTAINED_SHARE = 0.99
SUSTAINED_P99_S = 1.1


def env_ints(name: str, default: str) -> list[int]:
    """Increasing positive integers, comma-separated (one is fine)."""
    text = os.environ.get(name, default)
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values) or values != sorted(set(values)):
        raise SystemExit(f"{name}={text!r}: expected increasing positive integers, comma-separated, such as {default}")
    return values


def env_seconds(name: str, default: str, unit: str = "seconds") -> float:
    text = os.environ.get(name, default)
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise SystemExit(f"{name}={text!r}: expected a positive number of {unit}")
    return value


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------- readings


@dataclass
class Meter:
    """Readings of every watched node; during a window also the intervals between them."""

    recording: bool = False
    readings: int = 0  # inside the window
    intervals: list[float] = field(default_factory=list)  # inside the window, seconds
    seen: dict[str, int] = field(default_factory=dict)  # endpoint -> readings since watched

    def watch(self, node: Node) -> Callable[[], None]:
        endpoint = node.endpoint
        self.seen[endpoint] = 0
        last: list[float] = []

        def on_change(change: Change) -> None:
            if change.path != READING:
                return
            now = time.perf_counter()
            self.seen[endpoint] += 1
            if self.recording:
                self.readings += 1
                if last:
                    self.intervals.append(now - last[0])
            last[:] = [now]

        return node.objects.add_listener(on_change)

    def open_window(self) -> None:
        self.readings, self.intervals, self.recording = 0, [], True

    def close_window(self) -> None:
        self.recording = False


@dataclass
class Notifications:
    """Notifications of /3303/0/5700 from a sample of nodes, as the gateway sees them."""

    recording: bool = False
    count: int = 0
    intervals: list[float] = field(default_factory=list)

    def listener(self) -> Callable[[object], None]:
        last: list[float] = []

        def on_notification(_: object) -> None:
            now = time.perf_counter()
            if self.recording:
                self.count += 1
                if last:
                    self.intervals.append(now - last[0])
            last[:] = [now]

        return on_notification


# ---------------------------------------------------------------------- fleet


async def deploy(gw: Gateway, node: Node, package: bytes, rate_ms: int | None) -> None:
    """The deployer's LwM2M steps, then the `rate` input as the shell command would give it."""
    ep = node.endpoint
    await gw.create(ep, "/9", instance_id=INSTANCE)
    await gw.write(ep, f"/9/{INSTANCE}/2", package)
    await gw.execute(ep, f"/9/{INSTANCE}/4")
    await gw.execute(ep, f"/9/{INSTANCE}/10")
    package_state = node.services.packages.get(INSTANCE) if node.services else None
    if package_state is None or package_state.service is None or package_state.service.state is not ServiceState.RUNNING:
        error = package_state.error if package_state else "no package"
        raise RuntimeError(f"{ep}: temperature service not running after activate ({error})")
    if rate_ms is not None:
        node.services.input(INSTANCE, "rate", rate_ms)


async def add_nodes(gw: Gateway, clock: VirtualClock, names: Iterable[str], timeout: float,
                    meter_services: bool = False) -> list[Node]:
    """Boot new nodes and register them to ``gw``; on failure they are closed again."""
    nodes = [Node(name, clock=clock, meter_services=meter_services) for name in names]
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        await asyncio.gather(*(n.connect(gw.uri) for n in nodes))
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(n.wait_registered(timeout) for n in nodes))
    except TimeoutError:
        registered = sum(n.registered for n in nodes)
        await close_nodes(nodes)
        raise RuntimeError(f"only {registered} of {len(nodes)} nodes registered within {timeout:g} s") from None
    except BaseException:
        await close_nodes(nodes)
        raise
    return nodes


async def deploy_all(gw: Gateway, nodes: list[Node], package: bytes, rate_ms: int | None, timeout: float) -> None:
    limit = asyncio.Semaphore(DEPLOY_CONCURRENCY)  # a few dozen in flight keep the gateway's socket busy, not flooded

    async def one(node: Node) -> None:
        async with limit:
            await deploy(gw, node, package, rate_ms)

    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(one(n) for n in nodes))
    except TimeoutError:
        running = sum(bool(n.services and n.services.packages.get(INSTANCE)) for n in nodes)
        raise RuntimeError(f"deploying to {len(nodes)} nodes took over {timeout:g} s ({running} got a package)") from None


async def bring_up(
    gw: Gateway, clock: VirtualClock, package: bytes, names: Iterable[str], rate_ms: int | None,
    meter_services: bool = False,
) -> tuple[list[Node], float]:
    """New nodes registered and running the service; also the peak RSS (MB) once they were registered."""
    names = list(names)
    nodes = await add_nodes(gw, clock, names, timeout=30 + 0.05 * len(names), meter_services=meter_services)
    registered_rss = peak_rss_mb()
    try:
        await deploy_all(gw, nodes, package, rate_ms, timeout=30 + 0.1 * len(nodes))
    except BaseException:
        await close_nodes(nodes)
        raise
    return nodes, registered_rss


async def close_nodes(nodes: list[Node]) -> None:
    # In batches: thousands of De-registers at once outrun the gateway's answers
    # (5 s request timeout), and the gateway would close with requests half done.
    for i in range(0, len(nodes), CLOSE_BATCH):
        await asyncio.gather(*(n.aclose() for n in nodes[i : i + CLOSE_BATCH]), return_exceptions=True)


async def wait_until(condition: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout:g} s: {describe()}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- 1 + 2: real time


@dataclass
class Step:
    nodes: int
    bring_up_s: float
    warm_up_s: float
    window_s: float
    readings: int
    p50: float
    p99: float
    worst: float
    cpu_s: float
    rss_mb: float  # peak, once the step's nodes run the service
    new_nodes: int
    registered_rss_mb: float  # peak, once the step's new nodes were registered, before the deploy
    sampled: int
    sampled_expected: int
    sampled_p99: float

    @property
    def share(self) -> float:
        return self.readings / (self.nodes * self.window_s)

    @property
    def sustained(self) -> bool:
        return self.share >= SUSTAINED_SHARE and self.p99 <= SUSTAINED_P99_S

    @property
    def service_kb(self) -> float:
        return (self.rss_mb - self.registered_rss_mb) * 1024 / self.new_nodes

    @property
    def cpu_us_per_node_s(self) -> float:
        return self.cpu_s / self.nodes / self.window_s * 1e6


def recording(gw: Gateway, on: bool | None = None) -> PacketCapture | None:
    """With BENCH_RECORD=1: the gateway's datagrams go into a capture, as in a test that records its bundle."""
    if not (RECORD if on is None else on):
        return None
    capture = PacketCapture()
    tap(gw, capture.sink(capture.add_interface("gateway", "bench", gw.port)))
    return capture


async def realtime_ladder(package: bytes, ladder: list[int], window: float) -> tuple[list[Step], float]:
    clock = VirtualClock()  # real time, shared by the fleet as the simulator shares it
    meter = Meter()
    sample = Notifications()
    nodes: list[Node] = []
    steps: list[Step] = []
    async with Gateway(expiry_grace=60.0) as gw:
        recording(gw)
        rss_before = peak_rss_mb()
        try:
            for target in ladder:
                t0 = time.perf_counter()
                try:
                    new, registered_rss = await bring_up(
                        gw, clock, package, (f"svc{i}" for i in range(len(nodes), target)), FAST_RATE_MS
                    )
                except RuntimeError as e:
                    print(f"  {target:5} nodes: NOT sustained: {e}")
                    break
                nodes += new
                for node in new:
                    meter.watch(node)
                for node in new[: max(0, OBSERVED_SAMPLE - (len(nodes) - len(new)))]:
                    observation = await gw.observe(node.endpoint, READING)
                    observation.add_listener(sample.listener())
                bring_up_s = time.perf_counter() - t0
                # The reading at activation came before the meter watched; the next one ends the
                # first 30 s sleep, and from then on the service reads every second.
                t1 = time.perf_counter()
                try:
                    await wait_until(
                        lambda new=new: all(meter.seen[n.endpoint] >= 1 for n in new), DEFAULT_PERIOD_S * 2 + 30,
                        lambda new=new: f"{sum(meter.seen[n.endpoint] < 1 for n in new)} of {len(new)} new nodes "
                                f"have not left their first {DEFAULT_PERIOD_S:g} s sleep",
                    )
                except TimeoutError as e:
                    print(f"  {target:5} nodes: NOT sustained: {e}")
                    break
                warm_up_s = time.perf_counter() - t1
                await asyncio.sleep(1.0)
                rss_mb = peak_rss_mb()

                meter.open_window()
                sample.recording, sample.count, sample.intervals = True, 0, []
                cpu0, w0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(window)
                cpu_s, window_s = time.process_time() - cpu0, time.perf_counter() - w0
                meter.close_window()
                sample.recording = False

                intervals = meter.intervals or [float("inf")]
                observed = min(OBSERVED_SAMPLE, len(nodes))
                step = Step(
                    nodes=len(nodes), bring_up_s=bring_up_s, warm_up_s=warm_up_s, window_s=window_s,
                    readings=meter.readings, p50=percentile(intervals, 0.5), p99=percentile(intervals, 0.99),
                    worst=max(intervals), cpu_s=cpu_s, rss_mb=rss_mb,
                    new_nodes=len(new), registered_rss_mb=registered_rss,
                    sampled=sample.count, sampled_expected=int(observed * window_s),
                    sampled_p99=percentile(sample.intervals or [float("inf")], 0.99),
                )
                steps.append(step)
                print_step(step, rss_before)
                if not step.sustained:
                    break
        finally:
            await close_nodes(nodes)
    return steps, rss_before


def print_step(s: Step, rss_before: float) -> None:
    verdict = "sustained" if s.sustained else "NOT sustained"
    print(
        f"  {s.nodes:5} nodes: {verdict}: {s.readings}/{s.nodes * s.window_s:.0f} readings "
        f"({100 * s.share:.1f} %) in {s.window_s:.1f} s; interval p50 {s.p50 * 1e3:.0f} ms, "
        f"p99 {s.p99 * 1e3:.0f} ms, max {s.worst * 1e3:.0f} ms"
    )
    print(
        f"         CPU {100 * s.cpu_s / s.window_s:.0f} % of one core = {s.cpu_us_per_node_s:.0f} us per node per s; "
        f"peak RSS {s.rss_mb:.0f} MB = {(s.rss_mb - rss_before) * 1024 / s.nodes:.0f} kB per node, of which "
        f"{s.service_kb:.0f} kB for the service (deploy's delta / new nodes); "
        f"gateway notifications from {min(OBSERVED_SAMPLE, s.nodes)} observed nodes {s.sampled}/{s.sampled_expected} "
        f"(p99 interval {s.sampled_p99 * 1e3:.0f} ms); bring-up {s.bring_up_s:.1f} s, warm-up {s.warm_up_s:.1f} s"
    )


# ---------------------------------------------------------------------- 3: virtual time


@dataclass
class VirtualRun:
    nodes: int
    span_s: float  # simulated seconds timed
    wall_s: float
    cpu_s: float
    readings: int
    timers: int
    metered_periods: int = 0  # loop() periods the nodes' meters recorded, warm-up included (meter_services)

    @property
    def speedup(self) -> float:
        return self.span_s / self.wall_s


async def virtual_run(package: bytes, count: int, rate_ms: int | None, span: float, record: bool | None = None,
                      meter_services: bool = False) -> VirtualRun:
    """Advance ``count`` nodes ``span`` simulated seconds once their services are in their steady period.

    ``record``: the gateway's datagrams go into a capture (bundles, issue 14); ``meter_services``: the
    nodes count what their services run (hil.service.metering).
    """
    clock = VirtualClock(realtime=False)
    meter = Meter()
    async with Gateway(expiry_grace=60.0) as gw:
        recording(gw, record)
        nodes, _ = await bring_up(gw, clock, package, (f"virt{i}" for i in range(count)), rate_ms, meter_services)
        try:
            # Not timed: up to the end of the first 30 s sleep, after which a new rate applies.
            await clock.advance(DEFAULT_PERIOD_S)
            for node in nodes:
                meter.watch(node)
            t0, cpu0 = time.perf_counter(), time.process_time()
            timers = await clock.advance(span)
            wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
            metered = sum(stats.count for n in nodes if n.service_meters for cost in n.service_meters.costs.values()
                          if (stats := cost.kinds.get(PERIOD)))
        finally:
            await close_nodes(nodes)
    return VirtualRun(count, span, wall_s, cpu_s, sum(meter.seen.values()), timers, metered)


def virtual_span(count: int, period_s: float, max_wakes: int) -> float:
    """One simulated hour, or whole minutes short enough to stay under ``max_wakes`` service wake-ups."""
    if count * SIMULATED_HOUR / period_s <= max_wakes:
        return SIMULATED_HOUR
    return max(60.0, 60.0 * int(max_wakes * period_s / count / 60))


# ---------------------------------------------------------------------- main


async def recording_ab(package: bytes, counts: list[int], max_wakes: int) -> None:
    """Virtual-time runs, alternately without and with recording: CPU per reading, medians."""
    pairs = int(os.environ.get("BENCH_AB_ROUNDS", "3"))
    print(f"recording off / on, {pairs} alternating runs each, virtual time (median CPU per reading):")
    for count in counts:
        for period_s, rate in ((DEFAULT_PERIOD_S, None), (FAST_RATE_MS / 1000, FAST_RATE_MS)):
            span = virtual_span(count, period_s, max_wakes)
            cost: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(pairs):
                for record in (False, True):
                    r = await virtual_run(package, count, rate, span, record)
                    cost[record].append(r.cpu_s / max(1, r.readings) * 1e6)
            off, on = statistics.median(cost[False]), statistics.median(cost[True])
            print(f"  {count:4} node{'s' if count > 1 else ' '} at a {period_s:g} s period over {span:g} simulated s:"
                  f" {off:6.1f} / {on:6.1f} us CPU per reading ({100 * (on - off) / off:+.1f} %)")


async def main() -> None:
    ladder = env_ints("BENCH_NODES", "500,1000,2000")
    window = env_seconds("BENCH_WINDOW", "20")
    virtual_counts = env_ints("BENCH_VIRTUAL_NODES", "1,100")
    max_wakes = env_ints("BENCH_VIRTUAL_WAKES", "20000")[0]
    started = time.perf_counter()
    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs); recording {'on' if RECORD else 'off'}")
    with tempfile.TemporaryDirectory() as tmp:
        package = build_service(SERVICE_DIR, FilePath(tmp) / "build").read_bytes()
    print(f"temperature service package: {len(package)} bytes")
    if AB:
        await recording_ab(package, virtual_counts, max_wakes)
        return

    print(f"real time, rate {FAST_RATE_MS} ms, window {window:g} s per step, ladder {ladder}:")
    steps, rss_before = await realtime_ladder(package, ladder, window)
    held = [s for s in steps if s.sustained]
    if held:
        best = held[-1]
        top = best is steps[-1] and best.nodes == ladder[-1]
        print(f"largest node count sustained at a 1 s period: {best.nodes}{' (top of the ladder: more may hold)' if top else ''}")
        print(
            f"per node at {best.nodes}: {(best.rss_mb - rss_before) * 1024 / best.nodes:.0f} kB RSS (peak delta / N; "
            f"{best.service_kb:.0f} kB of it came with the service), "
            f"{best.cpu_us_per_node_s:.0f} us host CPU per node per s (process CPU / N / window)"
        )
    else:
        print("largest node count sustained at a 1 s period: none of the ladder")
    if len(steps) >= 2:
        a, b = steps[-2], steps[-1]
        marginal = (b.cpu_s / b.window_s - a.cpu_s / a.window_s) / (b.nodes - a.nodes)
        saturation = f"; a whole core would saturate near {1 / marginal:.0f} nodes" if marginal > 0 else ""
        print(
            f"marginal cost {a.nodes} -> {b.nodes} nodes: {marginal * 1e6:.0f} us CPU per node per s, "
            f"{(b.rss_mb - a.rss_mb) * 1024 / (b.nodes - a.nodes):.0f} kB RSS per node{saturation}"
        )
    print(f"load average after the real-time part: {load_average()}")

    print(f"virtual time on a manual clock (runs over {max_wakes} service wake-ups are shortened and scaled):")
    for count in virtual_counts:
        for period_s, rate in ((DEFAULT_PERIOD_S, None), (FAST_RATE_MS / 1000, FAST_RATE_MS)):
            span = virtual_span(count, period_s, max_wakes)
            r = await virtual_run(package, count, rate, span)
            measured = "" if span == SIMULATED_HOUR else f" (measured over {span:g} simulated s)"
            print(
                f"  {count:4} node{'s' if count > 1 else ' '} at a {period_s:g} s period: one simulated hour in "
                f"{SIMULATED_HOUR / r.speedup:7.3f} s wall = {r.speedup:9,.0f}x real time{measured}; "
                f"{r.cpu_s / r.wall_s * 100:.0f} % CPU, {r.cpu_s / max(1, r.readings) * 1e6:.0f} us CPU per reading; "
                f"{r.readings} readings, {r.timers} timers"
            )
    print(f"total {time.perf_counter() - started:.0f} s; load average after: {load_average()}")
