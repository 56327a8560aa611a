"""``embserve-hil sim``: simulated embServe nodes registering to any LwM2M server.

Boots N nodes (endpoints PREFIX1..PREFIXN) in this process on one shared
virtual clock, runs the bootstrap command on each node's shell, prints one
line per registration to stdout, and runs until Ctrl-C (or ``--duration``),
then de-registers every node. Logs go to stderr.

Every refusal or failure of a registration step is printed to stderr as it
happens, with the server's code and diagnostic. If not every node has
registered within ``--register-timeout`` seconds, the command says which did
not and why, stops, and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TextIO

from ..device.client import ClientEvent, ServerURIError, parse_server_uri
from ..device.clock import VirtualClock
from ..device.node import NODE_FORMATS, REPORT_MODES, Node
from ..device.sensors import SensorError, parse_sensor_spec
from ..lwm2m.codecs import SENML_CBOR, SENML_JSON, TLV

CLOSE_CONCURRENCY = 50
FORMAT_CHOICES = {"senml_cbor": SENML_CBOR, "senml_json": SENML_JSON, "tlv": TLV}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run simulated embServe nodes against an LwM2M server",
        description=(
            "Boot N simulated embServe nodes (endpoints PREFIX1..PREFIXN) that register to the LwM2M server "
            "at --server. Prints one line per registration; Ctrl-C de-registers every node and exits."
        ),
    )
    parser.add_argument("--server", required=True, metavar="coap://HOST:PORT", help="LwM2M server URI")
    parser.add_argument("--nodes", type=int, default=1, metavar="N", help="number of nodes (default 1)")
    parser.add_argument(
        "--prefix",
        default="node",
        help="endpoint name prefix (default 'node': node1, node2, ...)",
    )
    parser.add_argument(
        "--sensor",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help=(
            "a sensor on every node, repeatable: temperature=21.5, "
            "temperature=wave:base=21,amplitude=2,period=60,noise=0.1 or humidity=csv:trace.csv "
            "(default: temperature=21.5)"
        ),
    )
    parser.add_argument(
        "--lifetime",
        type=int,
        default=300,
        metavar="S",
        help="registration lifetime in seconds (default 300)",
    )
    parser.add_argument("--board", default="sim", help="board name reported in /3/0/1 (default sim)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the nodes bind to (default 127.0.0.1)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for waveform noise (default: per endpoint)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds instead of waiting for Ctrl-C",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="copy every node's console to stderr, prefixed with its endpoint",
    )
    parser.add_argument(
        "--register-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="exit with status 1 unless every node registered within S seconds (default 30)",
    )
    parser.add_argument(
        "--report",
        choices=REPORT_MODES,
        default="notify",
        help="how service outputs reach the server: notify (observations, default) or send (LwM2M 1.1 Send to /dp)",
    )
    parser.add_argument(
        "--formats",
        default=",".join(name for name, f in FORMAT_CHOICES.items() if f in NODE_FORMATS),
        metavar="LIST",
        help="structured content formats the nodes speak, preferred first, of senml_cbor, senml_json, tlv "
        "(default senml_cbor,senml_json,tlv; e.g. senml_json for a 1.1 client without TLV)",
    )
    parser.add_argument(
        "--lwm2m-version",
        choices=("1.0", "1.1"),
        default="1.1",
        help="LwM2M version the nodes register with (default 1.1; they fall back to 1.0 when a server refuses 1.1)",
    )
    parser.set_defaults(func=run)


def _sensors(specs: list[str]) -> dict[str, str] | None:
    """``{name: spec}`` after checking every spec; each node makes its own sources (with its own seed)."""
    if not specs:
        return None
    sensors: dict[str, str] = {}
    for spec in specs:
        name, _ = parse_sensor_spec(spec)
        if name in sensors:
            raise SensorError(f"sensor {name!r} is given twice (--sensor {spec!r})")
        sensors[name] = spec.partition("=")[2]
    return sensors


def _formats(text: str) -> tuple[int, ...]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMAT_CHOICES]
    if unknown or not names:
        raise ValueError(f"--formats {text!r}: give a comma-separated list of {', '.join(FORMAT_CHOICES)}")
    return tuple(FORMAT_CHOICES[n] for n in names)


async def simulate(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    sensors = _sensors(args.sensor)
    clock = VirtualClock()
    nodes = [
        Node(
            f"{args.prefix}{i}",
            clock=clock,
            board=args.board,
            sensors=sensors,
            lifetime=args.lifetime,
            host=args.host,
            seed=args.seed,
            lwm2m_version=args.lwm2m_version,
            formats=_formats(args.formats),
            report=args.report,
        )
        for i in range(1, args.nodes + 1)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def report(event: ClientEvent) -> None:
        if event.kind == "registered":
            out.write(f"{event.endpoint} registered to {event.server} at {event.detail}\n")
            out.flush()
        elif event.kind == "failed":
            err.write(f"{event.endpoint}: {event.detail}\n")
            err.flush()

    started: list[Node] = []
    status = 0
    try:
        for node in nodes:
            await node.start()
            started.append(node)
            node.add_registration_listener(report)
            if args.console:
                node.console.add_line_listener(lambda line, ep=node.endpoint: err.write(f"[{ep}] {line}\n"))
            node.console.write_input(f"embserve connector lwm2m server_add {args.server} {node.endpoint}\n")
        out.write(f"{len(nodes)} node(s) booted, registering to {args.server}\n")
        out.flush()
        end = None if args.duration is None else loop.time() + args.duration
        status = await _wait_registered(started, stop, args.register_timeout, end, err)
        if status == 0 and not stop.is_set():
            remaining = None if end is None else max(0.0, end - loop.time())
            try:
                async with asyncio.timeout(remaining):
                    await stop.wait()
            except TimeoutError:
                pass
    finally:
        registered = sum(1 for node in started if node.registered)
        # a few at a time: a thousand De-registers in one burst overflow the server's socket buffer
        gate = asyncio.Semaphore(CLOSE_CONCURRENCY)

        async def close(node: Node) -> None:
            async with gate:
                await node.aclose()

        await asyncio.gather(*(close(node) for node in started), return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        out.write(f"stopped: {registered} of {len(nodes)} node(s) were registered and de-registered\n")
        out.flush()
    return status


async def _wait_registered(nodes: list[Node], stop: asyncio.Event, timeout: float, end: float | None, err: TextIO) -> int:
    """0 once every node registered (or the run ends first); 1, naming those that did not, after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not all(node.registered for node in nodes):
        now = loop.time()
        if stop.is_set() or (end is not None and now >= end):
            return 0
        if now >= deadline:
            missing = [node for node in nodes if not node.registered]
            err.write(f"embserve-hil sim: {len(missing)} of {len(nodes)} node(s) did not register within {timeout:g} s\n")
            for node in missing[:20]:
                last = node.client.last_error if node.client is not None else ""
                err.write(f"  {node.endpoint}: {last or 'no answer from the server yet'}\n")
            if len(missing) > 20:
                err.write(f"  ... and {len(missing) - 20} more\n")
            err.flush()
            return 1
        await asyncio.sleep(0.05)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        parse_server_uri(args.server)
        _sensors(args.sensor)
    except (ServerURIError, SensorError) as exc:
        print(f"embserve-hil sim: {exc}", file=sys.stderr)
        return 2
    if args.nodes < 1:
        print(
            f"embserve-hil sim: --nodes must be at least 1, got {args.nodes}",
            file=sys.stderr,
        )
        return 2
    if args.lifetime < 1:
        print(
            f"embserve-hil sim: --lifetime must be at least 1 s, got {args.lifetime}",
            file=sys.stderr,
        )
        return 2
    if args.register_timeout <= 0:
        print(f"embserve-hil sim: --register-timeout must be > 0 s, got {args.register_timeout}", file=sys.stderr)
        return 2
    try:
        formats = _formats(args.formats)
    except ValueError as exc:
        print(f"embserve-hil sim: {exc}", file=sys.stderr)
        return 2
    if args.report == "send" and SENML_CBOR not in formats and SENML_JSON not in formats:
        print("embserve-hil sim: --report send needs a SenML format in --formats (Send carries SenML only)", file=sys.stderr)
        return 2
    return asyncio.run(simulate(args))
