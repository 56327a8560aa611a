"""``embserve-hil pull REF``: resolve a reference for a platform and fetch its service.json."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .push import add_registry_options, registry_kwargs, registry_of


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pull",
        help="fetch the service.json of an image for a platform",
        description="Resolve REF the way the far-edge-kubelet does (platform selection through "
        "nested indexes, digest checks), cache service.json and print the artifact "
        "manifest digest and the cached path.",
    )
    parser.add_argument("ref", metavar="REF")
    parser.add_argument("--platform", default="zephyr/arm/v7", help="os/arch[/variant] (default %(default)s)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache directory (default $XDG_CACHE_HOME/embserve-hil/oci)")
    parser.add_argument("-o", "--output", type=Path, help="also write service.json here")
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hil.faredge.oci import OciError, resolve  # aiohttp: slow to import

    try:
        kwargs = registry_kwargs(args, registry_of(args.ref))
        found = asyncio.run(resolve(args.ref, args.platform, cache_dir=args.cache, **kwargs))
    except OciError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        try:
            args.output.write_bytes(found.service_json)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    print(found.digest)
    print(found.path)
    return 0
