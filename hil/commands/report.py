"""``embserve-hil report LOGDIR [-o report.html]``: a session's HTML report, rebuilt from its log folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="rebuild a session's HTML report from its log folder",
        description=(
            "Read every test's report.json under LOGDIR (the --hil-log-dir of a pytest run of HIL tests) "
            "and write one self-contained HTML page: a summary table of the session, then per test what ran "
            "(target, board, firmware and service digests), the deploy's step timings, readings plots and "
            "links to its logs. For runs made without pytest-html's --html."
        ),
    )
    p.add_argument("log_dir", metavar="LOGDIR", help="the session's log folder")
    p.add_argument("-o", "--output", metavar="FILE", default=None, help="where to write the page (default LOGDIR/report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import ReportError, write_session_report
    from ..report.plot import available

    try:
        out, tests = write_session_report(Path(args.log_dir), Path(args.output) if args.output else None)
    except ReportError as e:
        print(f"embserve-hil report: {e}", file=sys.stderr)
        return 2
    plots = "" if available() else ' (no plots: matplotlib is missing; pip install "embserve-hil[report]")'
    print(f"{out}: {len(tests)} test{'s' * (len(tests) != 1)}{plots}")
    return 0
