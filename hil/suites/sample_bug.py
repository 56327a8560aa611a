"""A sample bug to practise reproducing device bugs on (docs/debugging.md).

The faulty_sensor service (shipped in ``services/faulty_sensor``) publishes a
calibrated temperature; a calibration offset of -2e8 makes its ``loop()``
store far outside its histogram and fault. This test writes that offset and
expects the readings to go on, so it fails, on every target, with the
fault's source line in the failure message and a replay bundle in its log
directory. It is marked ``xfail(strict=True)``: the suite stays green while
the bug is there, and turns red once someone fixes the service without
removing the mark.

Run it from an installed embserve-hil with ``pytest --pyargs
hil.suites.sample_bug --target ...``, or ``pytest tests/hil`` here.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.hil]

#: the input value that triggers the bug (see the comment at the top of services/faulty_sensor/service.c)
TRIGGER_OFFSET = -2e8
PERIOD_S = 2.0  # the service's period, in device seconds


def wall(node, device_seconds: float, margin: float = 2.0) -> float:
    return device_seconds / node.time_scale + margin


@pytest.mark.xfail(strict=True, reason="the sample bug: faulty_sensor's loop() faults on a calibration offset of -2e8")
async def test_calibration_offset_keeps_readings_coming(deployer, node, faulty_sensor_service, readings):
    if node.service_input != "shell":
        # `offset` is mapped to no resource: only a board whose shell takes inputs by key can be given it.
        pytest.skip(f"board {node.board.name} cannot write a service input by key (service_input is"
                    f" {node.service_input!r}); the sample bug needs `offset` written")
    if node.can_set_sensor("temperature"):
        await node.set_sensor("temperature", 22.5)  # any plausible temperature triggers it; this one is recorded
    deployment = await deployer.deploy(faulty_sensor_service, node.endpoint)
    async with readings(node) as collector:
        await collector.wait(1, timeout=wall(node, 2 * PERIOD_S))
        await node.set_service_input(deployment.instance, "offset", TRIGGER_OFFSET)
        # Readings must go on (calibrated, however odd): three more periods' worth.
        await collector.wait_more(3, timeout=wall(node, 4 * PERIOD_S))
