"""``embserve-hil push SERVICE_JSON REF``: push a service to an OCI registry."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """Transport and credential options shared by ``push``, ``pull`` and ``deploy``."""
    scheme = parser.add_mutually_exclusive_group()
    scheme.add_argument("--plain-http", dest="plain_http", action="store_const", const=True,
                        help="talk HTTP (default for 127.0.0.1/localhost registries)")
    scheme.add_argument("--tls", dest="plain_http", action="store_const", const=False,
                        help="talk HTTPS even to a loopback registry (default for other hosts)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the registry's TLS certificate")
    parser.add_argument("--ca-file", type=Path, help="extra CA bundle to trust for TLS")
    parser.add_argument("-u", "--username", help="registry user name")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the registry password from standard input (with -u)")
    secret.add_argument("-p", "--password",
                        help="registry password (discouraged: ps and shell history keep it; "
                        "use --password-stdin or $EMBSERVE_HIL_REGISTRY_PASSWORD)")
    parser.add_argument("--registry-config", type=Path, metavar="PATH",
                        help="Docker config file with the registry's credentials "
                        "(default $DOCKER_CONFIG/config.json, else ~/.docker/config.json)")


def registry_kwargs(args: argparse.Namespace, registry: str | None) -> dict[str, Any]:
    """Transport options and credentials for ``registry`` (none needed when None: a local file).

    Credentials come from the first of: -u with --password-stdin or -p,
    $EMBSERVE_HIL_REGISTRY_PASSWORD, the Docker config file (see
    :mod:`hil.faredge.oci.credentials`).
    """
    from hil.faredge.oci.credentials import find_credentials

    kwargs: dict[str, Any] = {"plain_http": args.plain_http, "insecure": args.insecure, "ca_file": args.ca_file}
    stdin = sys.stdin.read() if args.password_stdin else None
    if registry is None:
        return kwargs
    kwargs["auth"] = find_credentials(
        registry, username=args.username, password=args.password, password_stdin=stdin,
        config_path=args.registry_config, warn=lambda message: print(message, file=sys.stderr),
    )
    return kwargs


def registry_of(ref: str) -> str:
    from hil.faredge.oci import parse_reference

    return parse_reference(ref).registry


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
    try:
        kwargs = registry_kwargs(args, registry_of(args.ref))
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
