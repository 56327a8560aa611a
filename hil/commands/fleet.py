"""``embserve-hil fleet CONFIG.yaml``: a fleet's nodes (emulated or simulated) behind a gateway with all its APIs.

Prints where each API listens (the live fleet page among them, also on a port
of its own with ``--http PORT``), then a summary line every few seconds until
interrupted (Ctrl-C) or ``--duration`` has passed. The fleet file format is in
:mod:`hil.fleet`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import TextIO


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fleet",
        help="run a fleet file's nodes (QEMU/Renode or simulated) behind a gateway with CoAP, SDF/MQTT and REST APIs",
        description=(
            "Start the MQTT broker (unless --mqtt names one), the gateway with its SDF/MQTT bridge and "
            "Leshan-style REST API, and the nodes of a fleet file (IoTNetEMU config.yaml: 'zephyr' nodes boot "
            "their image on QEMU mps2-an385 or Renode, on the file's linux-br networks in a network namespace "
            "of their own (root; otherwise user networking); plus 'sim' nodes, sensors, lifetime, services and "
            "brace ranges such as node{1..500}). Prints where each API listens and a summary every few seconds; "
            "stops on Ctrl-C, removing everything it created."
        ),
    )
    parser.add_argument("config", help="fleet file (YAML)")
    parser.add_argument("--mqtt", metavar="HOST:PORT", help="use this MQTT broker instead of starting mosquitto")
    parser.add_argument("--host", default="127.0.0.1", help="address the gateway's APIs bind to (default 127.0.0.1)")
    parser.add_argument("--coap-port", type=int, default=0, help="UDP port of the LwM2M server (default: a free one)")
    parser.add_argument("--rest-port", type=int, default=0, help="TCP port of the REST API (default: a free one)")
    parser.add_argument("--http", type=int, default=None, metavar="PORT",
                        help="also serve the live fleet page on this port (0: a free one); the REST API serves it at /fleet too")
    parser.add_argument("--every", type=float, default=5.0, metavar="SECONDS", help="seconds between summaries (default 5)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long (default: run until interrupted)")
    parser.add_argument("--deploy-via", choices=["lwm2m", "mqtt", "rest"], default="lwm2m", help="path for the fleet's services (default lwm2m)")
    parser.add_argument("--log-dir", default=None,
                        help="directory for the broker's and the nodes' logs (default: temporary ones)")
    add_access_options(parser)
    parser.add_argument("--insecure-open", action="store_true",
                        help="beyond loopback, serve REST and MQTT without token, password or TLS (anyone who can "
                        "reach them can deploy code to every node)")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="where generated credentials go: rest-token, mqtt-password, mqtt-cert.pem (default: a new temporary directory)")
    parser.add_argument("--simulate", action="store_true",
                        help="run every node in the simulator (images and networks are not used)")
    parser.add_argument("--backend", choices=["qemu", "renode"], default=None,
                        help="emulator for every 'zephyr' node (default: the node's 'backend', else the first its board runs on)")
    parser.add_argument("--user-net", action="store_true",
                        help="no network namespace even as root: per-node user networking, bootstrap addresses rewritten")
    parser.add_argument("--qemu-icount", default=None, metavar="OPTIONS",
                        help="QEMU -icount for emulated nodes, e.g. 'shift=auto' (default: none; see docs/fleets.md)")
    parser.set_defaults(func=run)


def add_access_options(parser: argparse.ArgumentParser) -> None:
    """How to get into the gateway's northbound APIs; shared with ``deploy``."""
    parser.add_argument("--api-token-file", metavar="FILE",
                        help="bearer token of the REST API (0600 file); fleet: needed beyond loopback, and a FILE "
                        "that does not exist yet gets a new token, printed once")
    parser.add_argument("--mqtt-user", metavar="USER", help="MQTT user name (for a broker given with --mqtt)")
    parser.add_argument("--mqtt-password-file", metavar="FILE", help="file holding the MQTT password (0600)")
    parser.add_argument("--mqtt-ca-file", metavar="PEM", help="talk TLS to the broker, trusting this certificate")


def access_from(args: argparse.Namespace, *, generate: bool = False):  # -> (token, generated, MqttAuth | None)
    """The REST token and MQTT login the options name; a clear ValueError for a bad file.

    ``generate``: an --api-token-file that does not exist yet gets a new token (0600); the
    second value says whether that happened (the command then prints it, once).
    """
    from ..fita.mqtt import MqttAuth
    from ..secret import new_token_file, read_token_file

    token, generated = None, False
    if args.api_token_file:
        if generate and not Path(args.api_token_file).exists():
            token, generated = new_token_file(args.api_token_file), True
        else:
            token = read_token_file(args.api_token_file)
    password = read_token_file(args.mqtt_password_file) if args.mqtt_password_file else None
    if password is not None and not args.mqtt_user:
        raise ValueError("--mqtt-password-file needs --mqtt-user")
    auth = None
    if args.mqtt_user or args.mqtt_ca_file:
        auth = MqttAuth(args.mqtt_user, password, ca_file=Path(args.mqtt_ca_file) if args.mqtt_ca_file else None)
    return token, generated, auth


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--mqtt {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host.strip("[]"), int(port)


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


async def serve(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    # the simulator is heavy: imported only for this command
    from ..fleet import Fleet, FleetError, load_fleet

    specs = load_fleet(args.config, simulate=args.simulate, backend=args.backend)
    mqtt = parse_hostport(args.mqtt) if args.mqtt else None
    from ..infra.ports import is_loopback_host

    if not is_loopback_host(args.host) and not args.api_token_file and not args.insecure_open:
        raise FleetError(f"--host {args.host} is beyond loopback: give --api-token-file FILE (read, or generated "
                         "into FILE and printed once) for the REST API, or --insecure-open to serve it open")
    token, generated, mqtt_auth = access_from(args, generate=True)
    if args.every <= 0:
        raise FleetError(f"--every {args.every}: must be a positive number of seconds")
    if args.http is not None and not 0 <= args.http < 65536:
        raise FleetError(f"--http {args.http}: not a TCP port (0 for a free one)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Fleet(
            specs, mqtt=mqtt, host=args.host, coap_port=args.coap_port, rest_port=args.rest_port,
            log_dir=args.log_dir, deploy_via=args.deploy_via, api_token=token, mqtt_auth=mqtt_auth,
            insecure_open=args.insecure_open, state_dir=args.state_dir, user_networking=args.user_net,
            emulator_options={"qemu_icount": args.qemu_icount} if args.qemu_icount else None,
        ) as fleet, contextlib.AsyncExitStack() as extra:
            for api, where in fleet.endpoints().items():
                _say(out, f"{api:<5} {where}")
            if args.http is not None:
                from ..gateway.fleet_view import FleetPageServer

                page = await extra.enter_async_context(FleetPageServer(
                    fleet.view, args.host, args.http, token=fleet.api_token, insecure_open=args.insecure_open))
                _say(out, f"{'http':<5} {page.url}")
            for line in fleet.access():
                _say(out, line)
            shown = token if generated else fleet.generated_token
            if shown is not None:
                # the one time it is shown; afterwards it is only in the 0600 file
                _say(out, f"REST token {shown.reveal()}")
                fleet.generated_token = None
            if (networks := fleet.network.describe()) is not None:
                _say(out, f"net   {networks}")
            _say(out, f"fleet {len(specs)} nodes from {args.config}")
            deploying = asyncio.ensure_future(fleet.deploy_services())
            deadline = None if args.duration is None else time.monotonic() + args.duration
            while not stop.is_set():
                wait = args.every if deadline is None else max(0.0, min(args.every, deadline - time.monotonic()))
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except TimeoutError:
                    pass
                _say(out, time.strftime("%H:%M:%S ") + fleet.summary().line())
                if deadline is not None and time.monotonic() >= deadline:
                    break
            if not deploying.done():
                deploying.cancel()
            await asyncio.gather(deploying, return_exceptions=True)
        _say(out, "fleet stopped")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..fleet import FleetError
    from ..infra.process import InfraError

    try:
        return asyncio.run(serve(args))
    except (FleetError, argparse.ArgumentTypeError, ValueError) as exc:
        print(f"embserve-hil fleet: {exc}", file=sys.stderr)
        return 2
    except (InfraError, OSError) as exc:
        print(f"embserve-hil fleet: {exc}", file=sys.stderr)
        return 1
