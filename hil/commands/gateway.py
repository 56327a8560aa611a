"""``embserve-hil gateway``: run the LwM2M gateway server on its own.

stdout carries one JSON object per line: first ``{"event": "listening", ...}``
with the bound address, then one line per registration event, so scripts can
follow devices coming and going. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any, TextIO

from ..gateway.registry import RegistrationEvent
from ..gateway.server import Gateway
from ..gateway.strict import StrictRegistration
from ..gateway.store import StoreError
from ..lwm2m.transmission import TransmissionParameters


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="run the LwM2M server and print registration events as JSON lines",
        description=(
            "Run the LwM2M gateway server. stdout gets one JSON object per line: first "
            '{"event": "listening", ...} with the bound address, then one line per registration event '
            "(registered, updated, deregistered, expired). Logs go to stderr. Stop with Ctrl-C."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; '::' for all)")
    parser.add_argument(
        "--port", type=int, default=5683, help="UDP port to bind (default 5683, the CoAP port; 0 picks a free one)"
    )
    parser.add_argument(
        "--expiry-grace",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="time past a registration's lifetime before it expires (default 2)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse Registers as strict servers do: 4.12 for an LwM2M version other than 1.0/1.1, "
        "4.00 for a ct on the root link that is not an optional format (110, 112, 11543)",
    )
    parser.add_argument(
        "--database",
        metavar="PATH",
        help="keep registrations and deployments in this SQLite file, so a restarted gateway reaches its devices at once",
    )
    parser.add_argument(
        "--coap",
        metavar="PARAMS",
        default="",
        help="CoAP transmission parameters for requests to devices, e.g. ack_timeout=4,max_retransmit=4 for a slow "
        "link (default: RFC 7252's ack_timeout=2,ack_random_factor=1.5,max_retransmit=4)",
    )
    parser.set_defaults(func=run)


def event_record(event: RegistrationEvent) -> dict[str, Any]:
    reg = event.registration
    record: dict[str, Any] = {
        "event": event.kind,
        "endpoint": reg.endpoint,
        "registration_id": reg.registration_id,
        "address": reg.address_text,
        "lifetime": reg.lifetime,
        "lwm2m": reg.lwm2m_version,
        "binding": reg.binding,
        "objects": reg.object_paths,
    }
    if event.reason:
        record["reason"] = event.reason
    return record


def _emit(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


async def serve(host: str, port: int, expiry_grace: float, out: TextIO = sys.stdout, *, strict: bool = False,
                database: str | None = None, transmission: TransmissionParameters | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        policy = StrictRegistration() if strict else None
        async with Gateway(host, port, expiry_grace=expiry_grace, registration_policy=policy,
                           database=database, transmission=transmission) as gw:
            _emit(out, {"event": "listening", "uri": gw.uri, "host": gw.host, "port": gw.port})
            gw.add_listener(lambda event: _emit(out, event_record(event)))
            await stop.wait()
        _emit(out, {"event": "stopped"})
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    try:
        transmission = TransmissionParameters.parse(args.coap)
    except ValueError as exc:
        print(f"embserve-hil gateway: --coap {args.coap!r}: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args.host, args.port, args.expiry_grace, strict=args.strict,
                          database=args.database, transmission=transmission))
    except OSError as exc:
        print(f"embserve-hil gateway: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"embserve-hil gateway: {exc}", file=sys.stderr)
        return 1
    return 0
