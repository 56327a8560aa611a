"""Readings plots: one node's resource over time, drawn by matplotlib as inline SVG.

The x axis is the device's time when every reading carries it, else the
gateway's receive time since the test started. Injected sensor values are a
step line of their own (the reading should follow it), and each time the
service's period was set a dotted vertical line says to what. The readings'
markers sit in an SVG group whose id starts with ``readings-``, one ``<use>``
per reading, which is what the report's tests count in a browser.

matplotlib comes with the ``report`` extra; :func:`available` says whether
it is installed.
"""

from __future__ import annotations

import io
import importlib.util
import re
from numbers import Real
from typing import Any

from .record import Injection, RecordedTest, Series

WIDTH_IN, HEIGHT_IN = 7.0, 2.6


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def warm_up() -> None:
    """Import what drawing needs (most of a report's cost); run early, off the critical path."""
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, Real) and not isinstance(value, bool) else None


def _device_time_at(series: Series, wall: float, time_scale: float) -> float:
    """The device time of a wall-clock instant, from the nearest reading that has both."""
    nearest = min(series.points, key=lambda p: abs(p.time - wall))
    return nearest.device_time + (wall - nearest.time) * time_scale


def _x_axis(test: RecordedTest, series: Series):
    """The function from a wall-clock instant to x, and the axis label."""
    if series.on_device_time:
        return (lambda wall: _device_time_at(series, wall, test.time_scale)), "device time (s)"
    return (lambda wall: wall - test.started), "gateway receive time (s since the test started)"


def readings_svg(test: RecordedTest, series: Series, plot_id: str) -> str | None:
    """The plot of ``series`` as an ``<svg>`` element; None when it has no numeric reading.

    ``plot_id`` keeps the SVG's internal ids apart from every other plot in the same page.
    """
    points = [(p, v) for p in series.points if (v := _number(p.value)) is not None]
    if not points:
        return None
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", plot_id).strip("-")
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": slug, "font.size": 8}):
        fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN))
        ax = fig.add_subplot()
        x_of, label = _x_axis(test, series)
        xs = [p.device_time if series.on_device_time else x_of(p.time) for p, _ in points]
        ys = [v for _, v in points]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.0, color="#1f77b4",
                          label=f"readings ({len(points)})")
        line.set_gid(f"readings-{slug}")
        _injections(ax, test.injections_for(series), x_of, xs[-1])
        _periods(ax, test.periods_for(series.endpoint), x_of, test.time_scale, series.on_device_time)
        ax.set_xlabel(label)
        ax.set_ylabel(series.path)
        ax.set_title(f"{series.endpoint} {series.path}", loc="left")
        ax.grid(True, linewidth=0.3, alpha=0.5)
        ax.legend(loc="lower left", fontsize=7, frameon=False)
        # fixed margins: a layout engine would draw the figure twice (the report's cost is mostly drawing)
        fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.18)
        out = io.StringIO()
        fig.savefig(out, format="svg")
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or doctype


def _injections(ax: Any, injections: list[Injection], x_of: Any, x_end: float) -> None:
    values = [(x_of(i.time), v) for i in injections if (v := _number(i.value)) is not None]
    if not values:
        return
    xs = [x for x, _ in values] + [max(x_end, values[-1][0])]
    ys = [v for _, v in values] + [values[-1][1]]
    (line,) = ax.plot(xs, ys, drawstyle="steps-post", linestyle="--", linewidth=1.0, color="#d62728",
                      label="injected")
    ax.plot(xs[:-1], ys[:-1], linestyle="none", marker="x", markersize=5, color="#d62728")
    line.set_gid("injected")


def _periods(ax: Any, periods: list[tuple[float, float, str]], x_of: Any, time_scale: float, device_axis: bool) -> None:
    xs = [x_of(wall) for wall, _, _ in periods]
    lo, hi = ax.get_xlim()
    lo, hi = min([lo, *xs]), max([hi, *xs])
    for n, ((_, seconds, cause), x) in enumerate(zip(periods, xs)):
        ax.axvline(x, linestyle=":", linewidth=1.0, color="#7f7f7f")
        wall_note = "" if device_axis or time_scale == 1 else f" = {seconds / time_scale:g} s wall"
        # one label per line of text, so marks close together stay readable; left of a line near the right edge
        right = hi > lo and (x - lo) / (hi - lo) > 0.6
        ax.annotate(f"period {seconds:g} s ({cause}){wall_note}", (x, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-2 if right else 2, -9 - 9 * n), textcoords="offset points", fontsize=7,
                    color="#555555", ha="right" if right else "left")
