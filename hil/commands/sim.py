"""``embserve-hil sim``: simulated embServe nodes registering to any LwM2M server.

Boots N nodes (endpoints PREFIX1..PREFIXN) in this process on one shared
virtual clock, runs the bootstrap command on each node's shell, prints one
line per registration to stdout, and runs until Ctrl-C (or ``--duration``),
then de-registers every node. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TextIO

from ..device.client import ClientEvent, ServerURIError, parse_server_uri
from ..device.clock import VirtualClock
from ..device.node import Node
from ..device.sensors import SensorError, parse_sensor_spec

CLOSE_CONCURRENCY = 50


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

    started: list[Node] = []
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
        if args.duration is None:
            await stop.wait()
        else:
            try:
                async with asyncio.timeout(args.duration):
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
    return asyncio.run(simulate(args))
