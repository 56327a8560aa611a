"""``embserve-hil push SERVICE_JSON REF``: push a service to an OCI registry."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """Transport and credential options shared by ``push`` and ``pull``."""
    scheme = parser.add_mutually_exclusive_group()
    scheme.add_argument("--plain-http", dest="plain_http", action="store_const", const=True,
                        help="talk HTTP (default for 127.0.0.1/localhost registries)")
    scheme.add_argument("--tls", dest="plain_http", action="store_const", const=False,
                        help="talk HTTPS even to a loopback registry (default for other hosts)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the registry's TLS certificate")
    parser.add_argument("--ca-file", type=Path, help="extra CA bundle to trust for TLS")
    parser.add_argument("-u", "--username", help="registry user name")
    parser.add_argument("-p", "--password", help="registry password (with -u)")


def registry_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if bool(args.username) != bool(args.password):
        raise SystemExit("error: give both -u USER and -p PASS, or neither")
    return {
        "plain_http": args.plain_http,
        "insecure": args.insecure,
        "ca_file": args.ca_file,
        "auth": (args.username, args.password) if args.username else None,
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="push a service.json to an OCI registry",
        description="Push SERVICE_JSON as an embServe artifact (what `oras push` makes), "
        "or with --multi-platform as an image index whose zephyr/arm/v7 entry is the artifact. "
        "Prints the digest of what REF now points at.",
    )
    parser.add_argument("service_json", type=Path, metavar="SERVICE_JSON")
    parser.add_argument("ref", metavar="REF", help="e.g. 127.0.0.1:5000/hil/temperature:1.0")
    parser.add_argument("--config", type=Path, help="artifact config JSON (default: zephyr/arm/v7 platform)")
    parser.add_argument("--multi-platform", action="store_true",
                        help="push an image index with linux/amd64 and linux/arm64 placeholders")
    parser.add_argument("--nested", action="store_true",
                        help="with --multi-platform: outer index → inner index (FITA helper layout)")
    parser.add_argument("--other-platform", action="append", metavar="OS/ARCH[/VARIANT]",
                        help="placeholder platforms of --multi-platform (repeatable)")
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hil.faredge.oci import OciError, push_artifact, push_multiplatform  # aiohttp: slow to import

    if (args.nested or args.other_platform) and not args.multi_platform:
        print("error: --nested and --other-platform need --multi-platform", file=sys.stderr)
        return 2
    kwargs = registry_kwargs(args)
    try:
        if args.multi_platform:
            others = tuple(args.other_platform or ("linux/amd64", "linux/arm64"))
            result = asyncio.run(push_multiplatform(
                args.service_json, args.ref, nested=args.nested, other_platforms=others,
                config=args.config, **kwargs,
            ))
        else:
            result = asyncio.run(push_artifact(args.service_json, args.ref, config=args.config, **kwargs))
    except OciError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.digest)
    return 0
