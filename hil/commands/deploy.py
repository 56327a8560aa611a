"""``embserve-hil deploy REF|POD.yaml --node EP``: deploy a service through a running gateway.

The gateway is reached the way FITA's kubelet reaches it: over its
Leshan-style REST API (``--rest http://H:P``) or over MQTT (``--mqtt H:P``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ..faredge.deployer import Deployer, DeployError, load_pod_spec
from ..faredge.oci import OciError
from .fleet import access_from, add_access_options
from .push import add_registry_options, registry_kwargs, registry_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="deploy a service (OCI reference, service.json or Pod YAML) to a node",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="OCI reference, path to service.json, or a Pod/Deployment YAML")
    p.add_argument("--node", required=True, help="endpoint name of the node")
    via = p.add_mutually_exclusive_group(required=True)
    via.add_argument("--rest", metavar="URL", help="gateway REST API base, e.g. http://127.0.0.1:8080")
    via.add_argument("--mqtt", metavar="HOST:PORT", help="MQTT broker the gateway serves SDF requests on")
    p.add_argument("--cache", type=Path, default=None, help="OCI cache directory")
    p.add_argument("--remove", action="store_true", help="remove the service (by name or instance id) instead")
    add_registry_options(p)
    add_access_options(p)
    p.set_defaults(func=run)


def _registry_of_source(source: str) -> str | None:
    """The registry a deploy source is fetched from: None for a local service.json."""
    path = Path(source)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        return None
    ref = load_pod_spec(path).image if path.is_file() else source
    return registry_of(ref)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        kwargs = {"via": "mqtt", "broker": (host or "127.0.0.1", int(port))}
    else:
        kwargs = {"via": "rest", "rest_url": args.rest}
    try:
        token, _, mqtt_auth = access_from(args)
        registry = None if args.remove else _registry_of_source(args.source)
        options = registry_kwargs(args, registry)
    except (ValueError, OciError, DeployError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kwargs.update(auth=options.pop("auth", None), registry_options=options, api_token=token, mqtt_auth=mqtt_auth)
    try:
        async with Deployer(None, cache_dir=args.cache, **kwargs) as deployer:
            if args.remove:
                what = int(args.source) if args.source.isdigit() else args.source
                removed = await deployer.remove(args.node, what)
                print(f"removed /9/{', /9/'.join(map(str, removed))} from {args.node}")
                return 0
            source = Path(args.source)
            if source.suffix in (".yaml", ".yml") and source.is_file():
                deployment = await deployer.deploy_pod(source, args.node)
            else:
                deployment = await deployer.deploy(args.source, args.node)
    except DeployError as e:
        print(f"error: {e}")
        return 1
    print(deployment.describe())
    return 0
