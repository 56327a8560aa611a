"""``embserve-hil boards``: list the board catalog."""

from __future__ import annotations

import argparse
import json

from ..boards import BoardError, catalog, get_board, search_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("boards", help="list the board catalog", description=run.__doc__)
    p.add_argument("name", nargs="?", help="show one board in full")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the boards found on the search path ($EMBSERVE_HIL_BOARDS, ./boards, the shipped catalog)."""
    try:
        boards = [get_board(args.name)] if args.name else list(catalog().values())
    except BoardError as e:
        print(f"error: {e}")
        return 2
    if args.json:
        print(json.dumps([{k: (str(v) if k == "source" else v) for k, v in b.__dict__.items()} for b in boards], indent=2))
        return 0
    if args.name:
        for key, value in boards[0].__dict__.items():
            print(f"{key:16} {value}")
        return 0
    print(f"{'board':20} {'arch':10} {'backends':22} {'console':14} description")
    for b in boards:
        print(f"{b.name:20} {b.arch:10} {','.join(b.backends):22} {b.console:14} {b.description}")
    print(f"\nsearch path: {':'.join(str(d) for d in search_path())}")
    return 0
