"""``embserve-hil boards``: list the board catalog, or show one board."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..boards import Board, BoardError, catalog, get_board, search_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("boards", help="list the board catalog", description=run.__doc__)
    p.add_argument("name", nargs="?", help="show one board in full")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _as_dict(board: Board) -> dict[str, object]:
    data = dataclasses.asdict(board)
    data["source"] = str(board.source) if board.source else None
    return data


def run(args: argparse.Namespace) -> int:
    """List the boards found on the search path ($EMBSERVE_HIL_BOARDS, ./boards, the shipped catalog).

    Exit code 2 for an unknown board, 1 when some board file is malformed
    (the good ones are still listed, the bad ones named on stderr).
    """
    problems: list[BoardError] = []
    try:
        boards = [get_board(args.name)] if args.name else list(catalog(problems).values())
    except BoardError as e:
        print(f"error: {e}")
        return 2
    if args.json:
        print(json.dumps([_as_dict(b) for b in boards], indent=2))
    elif args.name:
        for key, value in _as_dict(boards[0]).items():
            if value not in (None, "", (), {}):
                shown = ", ".join(map(str, value)) if isinstance(value, tuple) else value
                print(f"{key:21} {shown}")
    else:
        print(f"{'board':20} {'arch':10} {'backends':22} {'console':14} description")
        for b in boards:
            print(f"{b.name:20} {b.arch:10} {','.join(b.backends):22} {b.console:14} {b.description}")
        print(f"\nsearch path: {':'.join(str(d) for d in search_path())}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0
