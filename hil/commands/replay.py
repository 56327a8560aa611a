"""``embserve-hil replay BUNDLE [--target ...] [--gdb [PORT]] [--stop-at STEP]``: run a recorded scenario again.

Exit status: 0 when the recorded failure recurred, 1 when it did not, 2
when the replay could not be done (bad bundle, mismatched digests, a target
that cannot run the board: one line on stderr, nothing left running), 3
when the bundle recorded no fault to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from hil.replay import WIRING, ReplayError, prepare, run as run_replay
from hil.targets.base import known_targets


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="rerun a test's bundle (bundle.json, services, timeline) on a target and say whether its failure recurred",
        description="Boot the bundle's firmware (checked by sha256), deploy its services straight through a gateway"
        " (no registry), apply its timeline at the same device times, and say whether the recorded fault came back.",
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory (or its bundle.json)")
    parser.add_argument("--target", choices=known_targets(), help="where to replay (default: the recorded target)")
    parser.add_argument("--board", help="board to replay on (default: the recorded one, or the target's default)")
    parser.add_argument("--firmware", type=Path, help="firmware ELF (must match the recorded sha256 on the recorded board)")
    parser.add_argument("--serial-port", help="a real board's serial port or URL (default: as recorded on that target)")
    parser.add_argument("--net-serial-port", help="its SLIP port (default: as recorded)")
    parser.add_argument("--gateway-host", help="gateway address the device is told (default: as recorded)")
    parser.add_argument("--gateway-listen", help="address the gateway listens on (default: as recorded, else 127.0.0.1)")
    parser.add_argument("--gdb", nargs="?", type=int, const=0, default=None, metavar="PORT",
                        help="start halted with a GDB server (a free loopback port unless PORT) and print the"
                             " gdb-multiarch command; the replay waits for the debugger")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="perform the timeline up to step STEP, then keep the devices up until Ctrl-C")
    parser.add_argument("--sim-speed", type=float, help="simulator: device seconds per wall second (default: as recorded)")
    parser.add_argument("--log-dir", type=Path, help="where the replay's logs and bundle go (default .hil-logs/replay-<time>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        wiring = {key: getattr(args, key) for key in WIRING}
        plan = prepare(args.bundle, target=args.target, board=args.board, firmware=args.firmware, wiring=wiring)
    except ReplayError as e:
        print(f"embserve-hil replay: {e}", file=sys.stderr)
        return 2
    if args.stop_at is not None and not 1 <= args.stop_at <= len(plan.bundle.timeline):
        print(f"embserve-hil replay: --stop-at {args.stop_at}: the bundle's timeline has steps 1 to"
              f" {len(plan.bundle.timeline)}", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(".hil-logs") / f"replay-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"replay: {plan.bundle.test.get('nodeid')} ({plan.bundle.test.get('outcome')} on {plan.bundle.target})"
          f" on {plan.target}, {len(plan.bundle.timeline)} steps", flush=True)
    try:
        result = asyncio.run(run_replay(plan, log_dir.resolve(), gdb_port=args.gdb, stop_at=args.stop_at,
                                        sim_speed=args.sim_speed, hold=None,
                                        announce=lambda line: print(line, flush=True)))
    except ReplayError as e:
        print(f"embserve-hil replay: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return {True: 0, False: 1, None: 3}[result.recurred]
