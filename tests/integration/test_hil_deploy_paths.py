"""The HIL suite on the simulator through each path FITA's kubelet takes to the gateway.

``--deploy-via mqtt`` puts the SDF/MQTT bridge and a real mosquitto between
the deployer and the gateway, ``--deploy-via rest`` the Leshan-style REST API;
the suite itself is unchanged.
"""

from __future__ import annotations

import re

import pytest
from conftest import run_child_pytest

pytestmark = [pytest.mark.sim, pytest.mark.slow]


@pytest.mark.parametrize("via", ["mqtt", "rest"])
async def test_hil_suite_passes_deploying_via(via, tmp_path):
    code, output = await run_child_pytest(
        ["tests/hil", "-q", "-p", "no:cacheprovider", "--target", "sim", "--deploy-via", via,
         "--hil-log-dir", str(tmp_path / "logs")],
        timeout=300,
    )
    summary = re.search(r"(\d+) passed", output)
    assert code == 0 and summary and int(summary.group(1)) == 5, output[-4000:]
