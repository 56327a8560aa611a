"""HTML of a recorded test: what ran, how long the deploy's steps took, the readings plots, the logs.

:func:`section` is the part for one test; the pytest plugin hands it to
pytest-html as the test's extra HTML, and :func:`session_page` puts the
sections of a whole session behind a summary table (``embserve-hil report``).
Everything is inline (the plots are SVG elements), so a page is one file.
Links to a test's log folder and bundle are relative to where the page is
written, so the page and the logs can move together.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

from . import plot
from .record import FIRST_READING, RecordedTest

STYLE = """
.hil-test { font: 13px/1.4 sans-serif; margin: 0.5em 0 1em; }
.hil-test table { border-collapse: collapse; margin: 0.3em 0 0.6em; }
.hil-test th, .hil-test td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
.hil-test td.ms { text-align: right; font-variant-numeric: tabular-nums; }
.hil-test code { font-size: 12px; word-break: break-all; }
.hil-test figure { margin: 0.3em 0; }
.hil-test svg { max-width: 100%; height: auto; }
.hil-note { color: #666; }
"""

PAGE_STYLE = """
body { font: 14px/1.4 sans-serif; margin: 1.5em; color: #222; }
table.hil-summary { border-collapse: collapse; }
table.hil-summary th, table.hil-summary td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
table.hil-summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
.outcome-passed { color: #1a7f37; } .outcome-failed, .outcome-error { color: #cf222e; }
.outcome-skipped, .outcome-xfailed { color: #9a6700; }
h2 { margin-top: 1.6em; font-size: 16px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def link(target: str | Path, base: Path | None) -> str:
    """``target`` as the page at ``base`` (a directory) reaches it: relative when it can be."""
    target = Path(target)
    if base is not None:
        try:
            return Path(os.path.relpath(target, base)).as_posix() + ("/" if target.is_dir() else "")
        except ValueError:  # another drive
            pass
    return target.absolute().as_uri()


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f}"


def _short(digest: str | None, keep: int = 19) -> str:
    if not digest:
        return "–"
    return f'<code title="{_e(digest)}">{_e(digest[:keep])}…</code>' if len(digest) > keep else f"<code>{_e(digest)}</code>"


def facts_table(test: RecordedTest, base: Path | None) -> str:
    firmware = "the simulator (no firmware file)" if test.firmware is None else (
        f"<code>{_e(test.firmware)}</code><br>sha256 <code>{_e(test.firmware_sha256 or 'unreadable')}</code>")
    digests = [d for d in dict.fromkeys(d.digest for d in test.deployments if d.digest)]
    rows = [
        ("target", _e(test.target or "–")),
        ("board", _e(test.board or "–")),
        ("firmware", firmware),
        ("service digest", "<br>".join(f"<code>{_e(d)}</code>" for d in digests) or "–"),
        ("readings", f"{test.readings} in {len(test.series)} series"),
    ]
    if test.log_dir:
        rows.append(("log folder", f'<a href="{_e(link(test.log_dir, base))}">{_e(test.log_dir)}</a>'))
    if test.bundle:
        rows.append(("bundle", f'<a href="{_e(link(test.bundle, base))}">{_e(test.bundle)}</a>'))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="hil-facts">{body}</table>'


def steps_table(test: RecordedTest) -> str:
    if not test.deployments:
        return '<p class="hil-note">no deployment in this test</p>'
    names = list(dict.fromkeys(k for d in test.deployments for k in d.steps if k != FIRST_READING))
    names.append(FIRST_READING)
    head = "".join(f"<th>{_e(n)} ms</th>" for n in names)
    rows = []
    for d in test.deployments:
        what = f"{_e(d.service)} v{_e(d.version)} at /9/{d.instance}" + (" (already running)" if d.reused else "")
        cells = "".join(f'<td class="ms">{_ms(d.steps.get(n))}</td>' for n in names)
        rows.append(f"<tr><td>{_e(d.endpoint)}</td><td>{what}</td>{cells}"
                    f'<td class="ms">{_ms(d.total)}</td></tr>')
    return (f'<table class="hil-steps"><tr><th>node</th><th>service</th>{head}<th>total ms</th></tr>'
            f'{"".join(rows)}</table>')


def plots(test: RecordedTest) -> str:
    if not test.series:
        return '<p class="hil-note">no readings collected</p>'
    if not plot.available():
        return '<p class="hil-note">readings plots need matplotlib: pip install "embserve-hil[report]"</p>'
    figures = []
    for i, series in enumerate(test.series):
        try:
            svg = plot.readings_svg(test, series, f"{test.nodeid}-{i}")
        except Exception as e:  # noqa: BLE001 - one plot that cannot be drawn must not take the report with it
            figures.append(f'<p class="hil-note">{_e(series.endpoint)} {_e(series.path)}: plot failed: {_e(e)}</p>')
            continue
        interval = test.median_interval(series)
        n = len(series.points)
        caption = (f"{_e(series.endpoint)} {_e(series.path)}: {n} reading{'s' * (n != 1)}"
                   + (f", median interval {interval:.3g} s (device)" if interval is not None else ""))
        if svg is None:
            figures.append(f'<p class="hil-note">{caption}; none numeric, nothing to plot</p>')
            continue
        figures.append(f'<figure class="hil-plot" data-endpoint="{_e(series.endpoint)}" data-path="{_e(series.path)}">'
                       f"{svg}<figcaption>{caption}</figcaption></figure>")
    return "".join(figures)


def section(test: RecordedTest, base: Path | None) -> str:
    """One test's part of a report (its own style included, so it reads the same anywhere)."""
    return (f'<div class="hil-test" data-nodeid="{_e(test.nodeid)}"><style>{STYLE}</style>'
            f"{facts_table(test, base)}{steps_table(test)}{plots(test)}</div>")


def _anchor(i: int) -> str:
    return f"test-{i + 1}"


def summary_table(tests: list[RecordedTest]) -> str:
    head = ("<tr><th>test</th><th>outcome</th><th>duration s</th><th>target</th><th>board</th>"
            "<th>readings</th><th>deploy ms</th><th>firmware sha256</th><th>service digest</th></tr>")
    rows = []
    for i, t in enumerate(tests):
        deploy = t.deploy_ms
        rows.append(
            f'<tr><td><a href="#{_anchor(i)}">{_e(t.nodeid)}</a></td>'
            f'<td class="outcome-{_e(t.outcome)}">{_e(t.outcome)}</td><td class="num">{t.duration:.2f}</td>'
            f"<td>{_e(t.target or '–')}</td><td>{_e(t.board or '–')}</td><td class=\"num\">{t.readings}</td>"
            f'<td class="num">{"–" if deploy is None else f"{deploy:g}"}</td>'
            f"<td>{_short(t.firmware_sha256)}</td><td>{_short(t.service_digest)}</td></tr>")
    counts = {}
    for t in tests:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    line = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    return f'<p>{len(tests)} HIL tests: {_e(line)}</p><table class="hil-summary">{head}{"".join(rows)}</table>'


def session_page(tests: list[RecordedTest], title: str, base: Path | None) -> str:
    """A whole page: the summary table, then every test's section."""
    started = min((t.started for t in tests), default=time.time())
    sections = "".join(
        f'<h2 id="{_anchor(i)}">{_e(t.nodeid)} <span class="outcome-{_e(t.outcome)}">{_e(t.outcome)}</span></h2>'
        f"{section(t, base)}" for i, t in enumerate(tests))
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{PAGE_STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"hil-note\">session started "
            f"{_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started)))}</p>"
            f"{summary_table(tests)}{sections}</body></html>\n")
