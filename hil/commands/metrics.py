"""``embserve-hil metrics FILE [-o PAGE.html] [--json]``: a Renode profiler file or a test's metrics.json, summarised.

For a profile written outside the harness (``machine EnableProfiler "FILE"`` in
your own Renode session) as much as for a test's log directory: the summary
on stdout, and with ``-o`` the page of plots a test leaves as metrics.html.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hil.metrics import DeviceMetrics, ProfileFormatError, parse_profile, read_metrics_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="summarise a Renode profiler file or a test's metrics.json; -o writes the plots",
        description="Execution metrics: instructions, memory and peripheral accesses, exceptions (Renode's"
                    " profiler), or each service's cost (the simulator), from FILE.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="a Renode profiler file, or metrics.json")
    parser.add_argument("-o", "--output", type=Path, metavar="PAGE", help="write the HTML page of plots here")
    parser.add_argument("--json", action="store_true", help="the summary as JSON")
    parser.set_defaults(func=run)


def load(path: Path) -> dict[str, DeviceMetrics]:
    """Every node in ``path``: a metrics.json (by its content) or one node's profiler file."""
    with path.open("rb") as f:
        first = f.read(1)
    if first == b"{":
        return read_metrics_json(path)
    return {path.stem: parse_profile(path, path.stem)}


def run(args: argparse.Namespace) -> int:
    try:
        nodes = load(args.file)
    except (OSError, ValueError, ProfileFormatError) as exc:
        print(f"embserve-hil metrics: {exc}", file=sys.stderr)
        return 1
    summaries = {endpoint: m.summary() | {"notes": m.notes} for endpoint, m in nodes.items()}
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        for summary in summaries.values():
            for key, value in summary.items():
                print(f"{key}: {value}")
            print()
    if args.output:
        from hil.metrics.plot import available, write_metrics_page

        write_metrics_page(args.output, nodes, f"execution metrics: {args.file.name}")
        if not available():
            print("embserve-hil metrics: no plots in the page: matplotlib is not installed (embserve-hil[report])",
                  file=sys.stderr)
    return 0
