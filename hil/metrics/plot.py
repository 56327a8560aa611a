"""The renode-colab set of plots, drawn by matplotlib as inline SVG, and a standalone page per test.

For each node: executed instructions (per CPU; on the simulator per
service), memory reads and writes, peripheral writes and reads (one line per
peripheral), and exceptions (one line per number), each cumulative over
virtual time as Renode's metrics visualizer draws them; on the simulator
also each service's instructions per ``loop()`` period. :func:`node_figures`
gives the SVGs for a report to embed; :func:`write_metrics_page` writes the
standalone ``metrics.html`` of a test.

matplotlib comes with the ``report`` extra; :func:`available` says whether it is installed.
"""

from __future__ import annotations

import html
import importlib.util
import io
import re
from pathlib import Path
from typing import Any

from .device import DeviceMetrics
from .series import Series

WIDTH_IN, HEIGHT_IN = 7.0, 2.6


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _svg(slug: str, title: str, draw: Any, window: tuple[float, float], rows: int = 1) -> str:
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": slug, "font.size": 8}):
        fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN * rows))
        axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
        draw(*axes)
        for ax in axes:
            if window[1] > window[0]:
                ax.set_xlim(*window)
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
            ax.grid(True, linewidth=0.3, alpha=0.5)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper left", fontsize=7, frameon=False)
        axes[0].set_title(title, loc="left")
        axes[-1].set_xlabel("virtual time (s)")
        fig.subplots_adjust(left=0.13, right=0.98, top=1 - 0.1 / rows, bottom=0.18 / rows, hspace=0.35)
        out = io.StringIO()
        fig.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or doctype


def _cumulative(ax: Any, series: dict[str, Series], ylabel: str, end: float,
                colors: dict[str, str] | None = None) -> None:
    for label, s in series.items():
        xs, ys = s.cumulative()
        if end > xs[-1]:
            xs.append(end)  # flat to the end of the window: every line spans the same time
            ys.append(ys[-1])
        ax.plot(xs, ys, linewidth=1.0, drawstyle="steps-post", label=f"{label} ({s.total:,})",
                color=(colors or {}).get(label))
    ax.set_ylabel(ylabel)


def node_figures(metrics: DeviceMetrics) -> list[tuple[str, str]]:
    """(title, inline SVG) of each plot the node's metrics allow, in the renode-colab order."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", metrics.endpoint).strip("-") or "node"
    out: list[tuple[str, str]] = []

    end = metrics.end

    def add(key: str, title: str, draw: Any, rows: int = 1) -> None:
        out.append((title, _svg(f"{slug}-{key}", f"{metrics.endpoint}: {title}", draw, (metrics.start, end), rows)))

    if metrics.source == "simulator":
        costs = metrics.services
        if costs:
            add("instructions", "executed instructions, by service",
                lambda ax: _cumulative(ax, {n: c.instructions for n, c in costs.items() if c.instructions}, "instructions", end))

            def periods(ax: Any) -> None:
                for name, cost in costs.items():
                    points = cost.periods()
                    ax.plot([p.time for p in points], [p.instructions for p in points], marker="o", markersize=3,
                            linewidth=0.8, label=f"{name} (most {max((p.instructions for p in points), default=0):,})")
                ax.set_ylabel("instructions")
                most = max((p.instructions for c in costs.values() for p in c.periods()), default=0)
                ax.set_ylim(0, max(1, most) * 1.2)

            add("periods", "instructions per loop() period", periods)
        return out
    if metrics.instruction_series:
        add("instructions", "executed instructions",
            lambda ax: _cumulative(ax, metrics.instruction_series, "instructions", end))
    if metrics.memory_series:
        add("memory", "memory accesses", lambda ax: _cumulative(ax, {
            f"{k}s": metrics.memory_series[k] for k in ("read", "write") if k in metrics.memory_series}, "accesses", end))
    if metrics.peripheral_series:
        colors = {name: f"C{i % 10}" for i, name in enumerate(metrics.peripheral_series)}  # one per peripheral

        def peripherals(writes: Any, reads: Any) -> None:
            for ax, kind in ((writes, "write"), (reads, "read")):
                _cumulative(ax, {name: kinds[kind] for name, kinds in metrics.peripheral_series.items() if kind in kinds},
                            f"{kind}s", end, colors)

        add("peripherals", "peripheral accesses (writes, then reads)", peripherals, rows=2)
    if metrics.exception_series:
        add("exceptions", "exceptions", lambda ax: _cumulative(
            ax, {metrics.exception_label(n): s for n, s in metrics.exception_series.items()}, "exceptions entered", end))
    return out


def _summary_table(metrics: DeviceMetrics) -> str:
    rows = []

    def flat(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flat(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            rows.append(f"<tr><th>{html.escape(prefix)}</th><td>{html.escape(f'{value:,}' if isinstance(value, int) else str(value))}</td></tr>")

    flat("", metrics.summary())
    return "<table>" + "".join(rows) + "</table>"


def _node_parts(endpoint: str, metrics: DeviceMetrics, heading: str) -> list[str]:
    """One node's heading (``heading`` is the tag: h2 on a page, p in a report section), summary, notes, plots."""
    what = (f"({html.escape(metrics.source)}, {round(metrics.start, 3) + 0.0:.3f}-{metrics.end:.3f} s"
            " of virtual time)")
    parts = [f"<{heading}><strong>{html.escape(endpoint)}</strong> <small>{what}</small></{heading}>",
             _summary_table(metrics)]
    parts.extend(f"<p><em>{html.escape(note)}</em></p>" for note in metrics.notes)
    if available():
        parts.extend(f"<figure>{svg}</figure>" for _, svg in node_figures(metrics))
    else:
        parts.append("<p>(no plots: matplotlib is not installed; it comes with embserve-hil[report])</p>")
    return parts


def metrics_section(nodes: dict[str, DeviceMetrics]) -> str:
    """An HTML fragment for a test's part of a report (pytest-html): each node's summary, notes and plots."""
    parts = ['<div class="hil-metrics"><h4>execution metrics</h4>']
    for endpoint, metrics in nodes.items():
        parts.extend(_node_parts(endpoint, metrics, "p"))
    parts.append("</div>")
    return "\n".join(parts)


def metrics_page(nodes: dict[str, DeviceMetrics], title: str) -> str:
    """A whole HTML page: each node's summary, notes and plots."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;margin:.5em 0}"
             "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}th{font-weight:normal;color:#555}"
             "svg{display:block;max-width:100%;height:auto}h1{font-size:1.3em;overflow-wrap:anywhere}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for endpoint, metrics in nodes.items():
        parts.extend(_node_parts(endpoint, metrics, "h2"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_metrics_page(path: Path, nodes: dict[str, DeviceMetrics], title: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(metrics_page(nodes, title))
    tmp.replace(path)
