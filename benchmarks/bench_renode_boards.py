"""Boot to registered on each Renode board, with the reference firmware built for it.

For every board with a Renode platform (mps2_an385, nrf52840dk,
stm32f4_discovery) and every way it reaches the gateway (SLIP through the
harness's bridge; the STM32F4 also over its Ethernet MAC, a Renode switch
and a TAP device inside a network namespace this benchmark creates with
``unshare -rn``), BOOTS times: Renode's launch to the firmware's shell
prompt, then the bootstrap to the gateway's registration. The firmware is
built once per board into a temporary directory. Needs ``renode`` on PATH
(or ``$RENODE``); says so and stops otherwise.

    python -m benchmarks renode_boards
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hil.boards import get_board
from hil.gateway.server import Gateway
from hil.infra.process import MissingBinaryError
from hil.infra.renode import renode_binary
from hil.targets.base import TargetConfig
from hil.targets.renode import RenodeTarget

REPO = Path(__file__).resolve().parents[1]
BOOTS = 3
RUNS = [("mps2_an385", "slip"), ("nrf52840dk", "slip"), ("stm32f4_discovery", "slip")]
ETH_RUN = ("stm32f4_discovery", "eth")
TAP, TAP_ADDRESS = "tap0", "10.0.2.2"  # the firmware's eth0 defaults: 10.0.2.15/24, gateway 10.0.2.2
IN_NETNS = "EMBSERVE_BENCH_IN_NETNS"


def build(board: str, out: Path) -> tuple[Path, str]:
    """The board's firmware, and its footprint as the Makefile prints it ("flash N B, RAM M B")."""
    run = subprocess.run(["make", "-s", "-C", str(REPO / "firmware"), f"BOARD={board}", f"BUILD={out}", "-j2"],
                         check=False, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"firmware build for {board} failed:\n{run.stdout}\n{run.stderr}")
    figures = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines() if line.split()[:1] in (["flash"], ["RAM"])}
    return out / "embserve.elf", f"flash {figures.get('flash', '?')} B, RAM {figures.get('RAM', '?')} B"


async def boot_once(board: str, net: str, firmware: Path, logs: Path, gateway_host: str) -> tuple[float, float]:
    """Seconds from Renode's launch to the prompt, and from then to the gateway's registration."""
    options = {"net": net, "renode_tap": TAP if net == "eth" else None}
    async with Gateway(host=gateway_host, port=0) as gateway:
        config = TargetConfig(endpoint="node1", log_dir=logs, board=get_board(board), firmware=firmware, options=options)
        start = time.perf_counter()
        async with RenodeTarget(config) as target:
            booted = time.perf_counter()
            await target.bootstrap(target.device_server_uri(gateway.host, gateway.port))
            await gateway.wait_for_registration("node1", timeout=30)
            registered = time.perf_counter()
    return booted - start, registered - booted


def seconds(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.2f} s (min {min(samples):.2f}, max {max(samples):.2f})"


async def measure(runs: list[tuple[str, str]], tmp: Path, gateway_host: str) -> None:
    for board, net in runs:
        firmware, footprint = build(board, tmp / f"build-{board}")
        boots, registrations = [], []
        for n in range(BOOTS):
            boot, registration = await boot_once(board, net, firmware, tmp / f"logs-{board}-{net}-{n}", gateway_host)
            boots.append(boot)
            registrations.append(registration)
        totals = [b + r for b, r in zip(boots, registrations)]
        print(f"{board} over {net} ({footprint}), {BOOTS} boots:")
        print(f"  launch -> prompt      {seconds(boots)}")
        print(f"  prompt -> registered  {seconds(registrations)}")
        print(f"  launch -> registered  {seconds(totals)}")


def eth_in_netns() -> None:
    """The Ethernet run, again this script inside a network namespace of its own with a TAP device in it."""
    if not (shutil.which("unshare") and shutil.which("ip") and os.path.exists("/dev/net/tun")):
        print(f"{ETH_RUN[0]} over eth: skipped (needs unshare, ip and /dev/net/tun to make a TAP device)")
        return
    setup = (f"ip link set lo up && ip tuntap add dev {TAP} mode tap && ip addr add {TAP_ADDRESS}/24 dev {TAP}"
             f" && ip link set {TAP} up && exec {sys.executable} -m benchmarks.bench_renode_boards")
    run = subprocess.run(["unshare", "-rn", "sh", "-c", setup], cwd=REPO, env=dict(os.environ, **{IN_NETNS: "1"}),
                         check=False, timeout=600)
    if run.returncode != 0:
        print(f"{ETH_RUN[0]} over eth: failed in the network namespace (exit {run.returncode})")


async def main() -> None:
    try:
        renode_binary()
    except MissingBinaryError as e:
        print(f"skipped: {e}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-renode-") as tmp:
        if os.environ.get(IN_NETNS):
            await measure([ETH_RUN], Path(tmp), TAP_ADDRESS)
            return
        await measure(RUNS, Path(tmp), "127.0.0.1")
    eth_in_netns()


if __name__ == "__main__":
    asyncio.run(main())
