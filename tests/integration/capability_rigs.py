"""Bench rigs for the shipped suite whose board files take capabilities away: the reference firmware on QEMU, over a pty.

* **production firmware**: the board file declares no injection and no way
  to write service inputs, as a bench with the team's production image
  would. The reference firmware stands in for it; without `sensor set` its
  temperature sensor reports a fixed 22.5 °C, which no real sensor does, so
  this board file (and only this one) lists the sensor in
  ``constant_sensors``: the suite's real-sensor paths still check the
  period and the plausible range, and a real board's file, which leaves the
  field out, keeps the check that readings are not stuck. (The check itself
  is shown to fire on the simulator, test_hil_capabilities_sim.py.) Every
  test passes or is skipped with its reason.
* **a lab with a stimulus**: no injection either, but the board file names a
  stimulus command, qemu_gdb_stimulus.py, which changes the temperature under
  the firmware through QEMU's gdbstub, as a chamber changes it under a real
  board; the exact-value tests come back and pass.

They run side by side with the reference-firmware rigs of
test_serial_slip_qemu.py (each suite waits out the service's 30 s period in
real time).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from test_serial_qemu import run_hil_suite

from hil.infra.ports import free_port
from hil.infra.qemu import QemuMachine

STIMULUS = Path(__file__).with_name("qemu_gdb_stimulus.py")
PRODUCTION_BENCH = 'inject = []\nservice_input = "none"\nconstant_sensors = ["temperature"]\n'
RATE_SKIP = "board mps2_an385_bench has no way to write service inputs (board file field 'service_input' is 'none')"


def totals(out: str) -> str:
    """The child pytest's last line: ``3 passed, 2 skipped in ...``."""
    return out.strip().splitlines()[-1].strip("= ")


def console_logs(rig: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((rig / "hil-logs").rglob("node1.console.log")))


async def production_firmware_bench(firmware: Path, rig: Path) -> None:
    rig.mkdir(parents=True)
    async with QemuMachine(firmware, console="pty", log_dir=rig / "qemu") as board:
        assert board.pty
        code, out = await run_hil_suite(rig, board, board.pty, "-rfsp", capabilities=PRODUCTION_BENCH)
    # skipped: the rate test, the sample bug (no inputs) and the cost test (the serial target records no metrics)
    assert code == 0 and totals(out).startswith("3 passed, 3 skipped in"), out[-4000:]
    assert f": {RATE_SKIP}\n" in out, out[-4000:]
    assert "the serial target records no execution metrics" in out, out[-4000:]
    typed = console_logs(rig)
    assert "sensor set" not in typed and "service input" not in typed, "commands a production image lacks were typed"
    # Every test's node was bootstrapped and registered, the sample bug's too; that one skips as soon as the
    # gateway has its registration, so the firmware's own "Registration Done" line may come after its log closed.
    assert typed.count("added, endpoint node1") == 5, typed[-3000:]
    assert typed.count("Registration Done (EP='node1')") in (4, 5), typed[-3000:]


async def stimulus_bench(firmware: Path, rig: Path) -> None:
    rig.mkdir(parents=True)
    gdb = free_port()
    async with QemuMachine(firmware, console="pty", log_dir=rig / "qemu",
                           extra_args=["-gdb", f"tcp:127.0.0.1:{gdb}"]) as board:
        assert board.pty
        stimulus = shlex.join([sys.executable, str(STIMULUS), f"127.0.0.1:{gdb}", str(firmware)]) + " {value}"
        fields = f'inject = []\nservice_input = "shell"\nstimulus.temperature = {json.dumps(stimulus)}\n'
        code, out = await run_hil_suite(rig, board, board.pty, "-rfsp", "-k", "deploy_reports or follow",
                                        capabilities=fields)
    assert code == 0 and totals(out).startswith("2 passed, 4 deselected in"), out[-4000:]
    assert "sensor set" not in console_logs(rig), "the board takes no injected values"
    stimuli = "".join(p.read_text() for p in (rig / "hil-logs").rglob("node1.stimulus-temperature.log"))
    for value in (21.5, 20.0, 18.25, 26.5, -4.0):
        assert f"temperature set to {value} at 127.0.0.1:{gdb}" in stimuli, stimuli
