"""``embserve-hil build-service DIR [-o OUT]``: compile a C service into service.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hil.sdk import BuildError, build_service


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-service",
        help="compile a C service directory (service.toml + sources) into service.json",
        description="Compile the service in DIR with arm-none-eabi-gcc, pack it as a udynlink module "
        "and write service.json. Prints the path of the written file.",
    )
    parser.add_argument("src", type=Path, metavar="DIR", help="service directory holding service.toml")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT", help="output directory (default: DIR/build)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        path = build_service(args.src, args.out)
    except BuildError as exc:
        print(f"embserve-hil build-service: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
