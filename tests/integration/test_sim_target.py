"""The simulator target through the pytest plugin's fixtures: boot, bootstrap, register."""

from __future__ import annotations

import pytest

from hil.lwm2m import Path

pytestmark = [pytest.mark.sim]


@pytest.fixture
def hil_target_name() -> str:
    return "sim"


async def test_node_fixture_registers_through_shell_bootstrap(node, gateway):
    reg = gateway.registration(node.endpoint)
    assert reg.lwm2m_version == "1.1"
    device = await gateway.read(node.endpoint, "/3/0")
    assert "embServe Node" in device[Path(3, 0, 17)]
    # The bootstrap command went through the console like on a board.
    assert any("server_add" in line.text for line in node.console.history)


async def test_shell_sensor_roundtrip(node):
    await node.set_sensor("temperature", 23.25)
    out = await node.shell.exec("sensor get temperature")
    assert any("23.25" in line for line in out), out
