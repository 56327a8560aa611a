"""The HIL suite: the temperature_sensor service, end to end, on any target.

Push the service to a real OCI registry, resolve it for zephyr/arm/v7, deploy
it through the gateway, and check what the node reports. Nothing here knows
which backend runs the node: periods are in device seconds and turned into
wall-clock waits with the target's time scale.

Run it from an installed embserve-hil with ``pytest --pyargs
hil.suites.temperature --target ...`` (no checkout, no configuration), or
from the repository as ``pytest tests/hil``, which imports these tests.
"""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.hil]

# The temperature service starts with a 30 s period (protocol doc, section 6).
DEFAULT_PERIOD_S = 30.0
FAST_PERIOD_MS = 2000


def wall(node, device_seconds: float, margin: float = 5.0) -> float:
    """Wall-clock timeout for something that takes ``device_seconds`` on the node."""
    return device_seconds / node.time_scale + margin


async def deploy_fast(deployer, node, ref, readings):
    """Deploy, then switch the service to FAST_PERIOD_MS and wait until it runs at that period."""
    deployment = await deployer.deploy(ref, node.endpoint)
    collector = readings(node)
    await collector.start()
    await set_rate(node, deployment, FAST_PERIOD_MS)
    # The service finishes its current 30 s sleep before the new rate applies.
    await collector.wait(2, timeout=wall(node, DEFAULT_PERIOD_S + 2 * FAST_PERIOD_MS / 1000))
    return deployment, collector


async def set_rate(node, deployment, rate_ms: int) -> list[str]:
    """Write the service's `rate` input by key; returns what the console printed."""
    return await node.set_service_input(deployment.instance, "rate", rate_ms)


async def test_deploy_reports_readings(deployer, node, temperature_service, readings):
    await node.set_sensor("temperature", 21.5)
    deployment = await deployer.deploy(temperature_service, node.endpoint)
    assert deployment.name == "temperature_sensor"
    assert deployment.instance >= deployer.first_instance

    async with readings(node, include_initial=True) as collector:
        got = await collector.wait(1, timeout=wall(node, 5))
    assert got[0].value == pytest.approx(21.5, abs=0.01)

    state = await deployer.channel.read_instance(node.endpoint, deployment.instance)
    assert state[12] is True, f"Activation State of /9/{deployment.instance}: {state}"


async def test_readings_follow_injected_values(deployer, node, temperature_service, readings):
    await node.set_sensor("temperature", 20.0)
    deployment, collector = await deploy_fast(deployer, node, temperature_service, readings)
    for value in (18.25, 26.5, -4.0):
        await node.set_sensor("temperature", value)
        reading = await collector.wait_for_value(value, timeout=wall(node, 3 * FAST_PERIOD_MS / 1000))
        assert reading.value == pytest.approx(value, abs=0.01)
    await collector.stop()


async def test_rate_input_changes_period(deployer, node, temperature_service, readings):
    deployment, collector = await deploy_fast(deployer, node, temperature_service, readings)
    fresh = await collector.wait_more(4, timeout=wall(node, 5 * FAST_PERIOD_MS / 1000))
    device_intervals = [dt * node.time_scale for dt in collector.intervals(fresh)]
    expected = FAST_PERIOD_MS / 1000
    assert all(0.5 * expected < dt < 1.6 * expected for dt in device_intervals), (
        f"intervals {device_intervals} (device s) for a rate of {FAST_PERIOD_MS} ms"
    )

    # Below 1000 ms the service refuses the new rate and says so on the console.
    out = await set_rate(node, deployment, 500)
    if not any("too low" in line.lower() for line in out):
        # On a board the service's line may come after the shell's prompt.
        await node.console.expect(re.compile("too low", re.IGNORECASE), timeout=wall(node, 1))
    fresh = await collector.wait_more(3, timeout=wall(node, 4 * expected))
    still = [dt * node.time_scale for dt in collector.intervals(fresh)]
    assert all(dt > 0.5 * expected for dt in still), f"period changed to {still} after a refused rate of 500 ms"
    await collector.stop()


async def test_remove_stops_readings(deployer, node, temperature_service, readings):
    deployment, collector = await deploy_fast(deployer, node, temperature_service, readings)
    removed = await deployer.remove(node.endpoint, deployment)
    assert removed == [deployment.instance]
    count = len(collector.readings)
    await node.sleep_device(4 * FAST_PERIOD_MS / 1000)
    late = collector.readings[count:]
    assert len(late) <= 1, f"readings kept arriving after removal: {[r.value for r in late]}"
    instances = await deployer.channel.instances(node.endpoint)
    assert deployment.instance not in instances
    await collector.stop()
