"""The service-input suite: a server's value reaches the service, on any target.

The project's thermostat service (``services/thermostat``) maps its
``setpoint`` input to Set Point Value (``lwm2m:3308/x/5900``) and reports
``demand`` = set point - temperature on ``/3300/x/5700``, at once for each new
set point. The test writes set points the board's way
(``node.set_service_input``: a Write of that resource through the gateway on
an ``lwm2m`` board, the shell command on a ``shell`` one; skipped with the
reason on ``none``) and checks the demand the service reports: exactly, where
the temperature can be set; by its sign, with set points beyond the board's
plausible temperature range, on a real sensor nobody sets.

The temperature suite cannot check the LwM2M way: its service maps its
``rate`` input to nothing. Run this one next to it, from an installed
embserve-hil: ``pytest --pyargs hil.suites.temperature hil.suites.thermostat
--target ...``.
"""

from __future__ import annotations

import pytest

from hil.suites.temperature import SENSOR, wall

pytestmark = [pytest.mark.hil]

DEMAND = (3300, 5700)  # the output's mapping, lwm2m:3300/x/5700
BEYOND_RANGE = 10.0  # °C past the board's plausible range: the demand's sign is certain


async def test_setpoint_written_the_boards_way_reaches_the_service(deployer, node, thermostat_service, readings):
    if node.can_set_sensor(SENSOR):
        await node.set_sensor(SENSOR, 20.0)
    deployment = await deployer.deploy(thermostat_service, node.endpoint)
    try:
        async with readings(node, resource=DEMAND) as demand:
            if node.can_set_sensor(SENSOR):
                tolerance = node.sensor_tolerance(SENSOR)
                for setpoint, expected in ((23.5, 3.5), (16.25, -3.75)):
                    since = len(demand.readings)  # the service reports before the write is answered
                    await node.set_service_input(deployment, "setpoint", setpoint)
                    await demand.wait_for_value(expected, timeout=wall(node, 2), tolerance=tolerance, since=since)
            else:
                low, high = node.board.temperature_range
                for setpoint, sign in ((high + BEYOND_RANGE, 1), (low - BEYOND_RANGE, -1)):
                    since = len(demand.readings)
                    await node.set_service_input(deployment, "setpoint", setpoint)
                    await demand.wait_until(
                        lambda got: any(sign * float(r.value) >= BEYOND_RANGE for r in got[since:]),
                        timeout=wall(node, 2),
                        what=f"a demand of {'+' if sign > 0 else '-'}{BEYOND_RANGE:g} or beyond for a set point of {setpoint:g}")
    finally:
        # also when the board has no way to write inputs (a skip): a bench's board keeps no leftover service
        await deployer.remove(node.endpoint, deployment)
