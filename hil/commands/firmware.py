"""``embserve-hil firmware [--board NAME] [--net eth|slip] [--print-path]``: build (or reuse) the reference firmware."""

from __future__ import annotations

import argparse
import sys

from ..reference_firmware import DEFAULT_BOARD, NET_MODES, FirmwareError, cache_root, reference_firmware
from ..resources import ResourceError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "firmware",
        help="build the reference firmware from the shipped sources (or reuse the cached build)",
        description="Build the reference embServe firmware for a board from the sources shipped with "
        f"embserve-hil into the per-user cache ({cache_root()}/<hash>/), or reuse the build there. "
        "The --target qemu and --target renode fixtures do the same when no --firmware is given and the "
        'board file says firmware = "reference".',
    )
    parser.add_argument("--board", default=DEFAULT_BOARD,
                        help=f"the board to build for (default {DEFAULT_BOARD}); a wrong name lists the boards the firmware has")
    parser.add_argument("--net", choices=NET_MODES, default="eth",
                        help="the network interface that is up after boot: eth (the board's Ethernet, default)"
                             " or slip (its second UART)")
    parser.add_argument("--print-path", action="store_true",
                        help="print only the ELF's path on stdout (what was done goes to stderr)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    say = (lambda line: print(line, file=sys.stderr)) if args.print_path else print
    try:
        elf = reference_firmware(args.net, board=args.board, announce=say)
    except (FirmwareError, ResourceError) as exc:
        print(f"embserve-hil firmware: {exc}", file=sys.stderr)
        return 1
    print(elf)
    return 0
