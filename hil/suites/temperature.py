"""The HIL suite: the temperature_sensor service, end to end, on any target.

Push the service to a real OCI registry, resolve it for zephyr/arm/v7, deploy
it through the gateway, and check what the node reports. Nothing here knows
which backend runs the node: periods are in device seconds and turned into
wall-clock waits with the target's time scale.

The board file says what a test may do to the node (docs/boards.md,
"Capabilities"). Where a value can be put on the sensor (the firmware takes
injected values, or the bench has a stimulus) the tests check exact values;
on a board with production firmware and a real sensor they check what a real
sensor can show: readings at the service's period, within the board's
plausible range, not all identical unless the board says the sensor is
constant. A test that needs what the board lacks (a way to write the service's
inputs) is skipped with the reason.

Run it from an installed embserve-hil with ``pytest --pyargs
hil.suites.temperature --target ...`` (no checkout, no configuration), or
from the repository as ``pytest tests/hil``, which imports these tests.
"""

from __future__ import annotations

import re

import pytest

from hil.readings import check_real_sensor
from hil.targets.errors import CapabilityMissing

pytestmark = [pytest.mark.hil]

SENSOR = "temperature"
# The temperature service starts with a 30 s period (protocol doc, section 6).
DEFAULT_PERIOD_S = 30.0
FAST_PERIOD_MS = 2000
#: readings a real sensor is judged on, at the fast rate; at the default period
#: (a board that cannot write the rate input) three, so two intervals
REAL_SENSOR_READINGS = 5


def wall(node, device_seconds: float, margin: float = 5.0) -> float:
    """Wall-clock timeout for something that takes ``device_seconds`` on the node."""
    return device_seconds / node.time_scale + margin


async def set_rate(node, deployment, rate_ms: int) -> list[str]:
    """Write the service's `rate` input the board's way; returns what the console printed (shell only)."""
    return await node.set_service_input(deployment, "rate", rate_ms)


async def deploy_and_collect(deployer, node, ref, readings, *, need_rate: bool = False):
    """Deploy and collect readings; at FAST_PERIOD_MS where the board can write the rate input.

    Returns the deployment, the collector and the period the service runs at
    (device seconds). Without a way to write inputs the service keeps its
    default period, or, with ``need_rate``, the test is skipped.
    """
    deployment = await deployer.deploy(ref, node.endpoint)
    collector = readings(node, include_initial=True)
    await collector.start()
    try:
        await set_rate(node, deployment, FAST_PERIOD_MS)
    except CapabilityMissing:
        if need_rate:
            raise
        # The reading of activation may have come before the observation (then it
        # is the initial value) or just after it: the last one in the first seconds.
        await node.sleep_device(2)
        return deployment, collector, DEFAULT_PERIOD_S
    # The service finishes its current 30 s sleep before the new rate applies. Half
    # as long again to spare: QEMU on a busy host loses timer ticks, so the firmware's clock runs slow.
    await collector.wait_more(2, timeout=wall(node, 1.5 * (DEFAULT_PERIOD_S + 2 * FAST_PERIOD_MS / 1000)))
    return deployment, collector, FAST_PERIOD_MS / 1000


def assert_period(node, collector, fresh, period_s: float) -> None:
    intervals = collector.device_intervals(fresh, time_scale=node.time_scale)
    assert all(0.5 * period_s < dt < 1.6 * period_s for dt in intervals), (
        f"intervals {intervals} (device s) for a period of {period_s:g} s"
    )


def check_plausible(node, values: list[float]) -> None:
    """``values`` could come from the board's real temperature sensor (see check_real_sensor)."""
    check_real_sensor(values, plausible=node.board.temperature_range,
                      constant=SENSOR in node.board.constant_sensors, what=f"{node.endpoint} {SENSOR} readings")


async def test_deploy_reports_readings(deployer, node, temperature_service, readings):
    settable = node.can_set_sensor(SENSOR)
    if settable:
        await node.set_sensor(SENSOR, 21.5)
    deployment = await deployer.deploy(temperature_service, node.endpoint)
    assert deployment.name == "temperature_sensor"
    assert deployment.instance >= deployer.first_instance

    async with readings(node, include_initial=True) as collector:
        got = await collector.wait(1, timeout=wall(node, 5))
    if settable:
        assert got[0].value == pytest.approx(21.5, abs=node.sensor_tolerance(SENSOR))
    else:
        check_plausible(node, [got[0].value])

    state = await deployer.channel.read_instance(node.endpoint, deployment.instance)
    assert state[12] is True, f"Activation State of /9/{deployment.instance}: {state}"


async def test_readings_follow_the_sensor(deployer, node, temperature_service, readings):
    if not node.can_set_sensor(SENSOR):
        # A real sensor nobody sets: readings at the service's period, and plausible.
        deployment, collector, period = await deploy_and_collect(deployer, node, temperature_service, readings)
        count = REAL_SENSOR_READINGS if period < DEFAULT_PERIOD_S else 2
        start = max(len(collector.readings) - 1, 0)  # the last reading so far starts the first interval
        await collector.wait_more(count, timeout=wall(node, (count + 1) * period))
        fresh = collector.readings[start:]
        assert_period(node, collector, fresh, period)
        check_plausible(node, [r.value for r in fresh])
        await collector.stop()
        return
    tolerance = node.sensor_tolerance(SENSOR)
    await node.set_sensor(SENSOR, 20.0)
    deployment, collector, period = await deploy_and_collect(deployer, node, temperature_service, readings)
    for value in (18.25, 26.5, -4.0):
        await node.set_sensor(SENSOR, value)
        reading = await collector.wait_for_value(value, timeout=wall(node, 3 * period), tolerance=tolerance)
        assert reading.value == pytest.approx(value, abs=tolerance)
    await collector.stop()


async def test_rate_input_changes_period(deployer, node, temperature_service, readings):
    # Checked by the period alone: it needs no value on the sensor, only a way to write the input.
    deployment, collector, period = await deploy_and_collect(deployer, node, temperature_service, readings,
                                                             need_rate=True)
    fresh = await collector.wait_more(4, timeout=wall(node, 5 * period))
    assert_period(node, collector, fresh, period)

    # Below 1000 ms the service refuses the new rate; the period stays.
    out = await set_rate(node, deployment, 500)
    if node.service_input == "shell" and not any("too low" in line.lower() for line in out):
        # The service says so on the console; on a board its line may come after the shell's prompt.
        await node.console.expect(re.compile("too low", re.IGNORECASE), timeout=wall(node, 1))
    fresh = await collector.wait_more(3, timeout=wall(node, 4 * period))
    still = collector.device_intervals(fresh, time_scale=node.time_scale)
    assert all(dt > 0.5 * period for dt in still), f"period changed to {still} after a refused rate of 500 ms"
    await collector.stop()


async def test_remove_stops_readings(deployer, node, temperature_service, readings):
    deployment, collector, period = await deploy_and_collect(deployer, node, temperature_service, readings)
    removed = await deployer.remove(node.endpoint, deployment)
    assert removed == [deployment.instance]
    count = len(collector.readings)
    # A running service would report at least twice in 2.5 periods; one late
    # reading is allowed (in flight, or the board's own sensor taking its
    # instance back).
    await node.sleep_device(2.5 * period)
    late = collector.readings[count:]
    assert len(late) <= 1, f"readings kept arriving after removal: {[r.value for r in late]}"
    instances = await deployer.channel.instances(node.endpoint)
    assert deployment.instance not in instances
    await collector.stop()


async def test_service_cost_is_recorded(metrics, deployer, node, temperature_service, readings, record_property):
    """What the service costs the device, recorded (not asserted) as JUnit properties and in metrics.json.

    The simulator counts the service's own instructions per period and its SDK
    calls; Renode's profiler the whole CPU (service, network stack, timers),
    its peripheral accesses and exceptions. Targets that record no metrics skip.
    """
    deployment, collector, period = await deploy_and_collect(deployer, node, temperature_service, readings)
    await collector.wait_more(1, timeout=wall(node, 2 * period))  # a whole period (sleep to sleep) past the first
    cost = await metrics.collect(node)
    await collector.stop()
    if cost.source == "simulator":
        # Exact on the simulator; a budget would be `assert cost.instructions_per_period(name) < N`.
        assert cost.instructions_per_period(deployment.name) > 0
    else:
        assert cost.instructions_total() > 0, cost.notes
    for key, value in cost.summary().items():
        record_property(f"cost.{key}", value)
