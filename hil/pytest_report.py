"""pytest plugin, report side: what people and CI see of each HIL test, and of long waits.

Loaded through its own ``pytest11`` entry point next to :mod:`hil.pytest_plugin`,
whose fixtures tell a test's :class:`~hil.report.TestRecord` what happens
(``item._hil_record``). After each HIL test this plugin

* writes ``report.json`` into the test's log folder (``embserve-hil report
  LOGDIR`` rebuilds the HTML report from those);
* gives it the JUnit properties ``target``, ``board``, ``firmware_sha256``,
  ``service_digest``, ``readings`` and ``deploy_ms`` (seen with ``--junitxml``);
* with pytest-html writing a report (``--html``), adds the test's section:
  facts, deploy step timings, readings plots, links to its logs, and the
  execution metrics' plots where the test recorded them (``metrics.json``).

It also puts the progress of long waits (:mod:`hil.progress`) on the
terminal: whole lines, between pytest's own, and pytest's line of the
running test is written again after them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from . import progress
from .secret import SecretFilter, redact_text

PHASES_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
_SINK_KEY = pytest.StashKey[progress.Sink]()
_WARMING_KEY = pytest.StashKey[threading.Thread]()


# --------------------------------------------------------------------------- secrets stay out


def pytest_sessionstart(session: pytest.Session) -> None:
    """Every log handler of pytest's (captured logs in reports and JUnit, the log file, live logs)
    shows a password, token or key as *** (docs/security.md); the logging plugin exists by now."""
    logging_plugin = session.config.pluginmanager.get_plugin("logging-plugin")
    for name in ("caplog_handler", "report_handler", "log_file_handler", "log_cli_handler"):
        handler = getattr(logging_plugin, name, None)
        if handler is not None and not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())


# --------------------------------------------------------------------------- the test's record


def _outcome(reports: dict[str, pytest.TestReport]) -> str:
    for when in ("setup", "call"):
        report = reports.get(when)
        if report is None:
            continue
        if hasattr(report, "wasxfail"):
            return "xfailed" if report.skipped else "xpassed"
        if report.failed:
            return "failed" if when == "call" else "error"
        if report.skipped:
            return "skipped"
    return "passed"


def _html_report_dir(config: pytest.Config) -> Path | None:
    """Where pytest-html writes its report (as it resolves the path), or None when it writes none."""
    path = getattr(config.option, "htmlpath", None)
    if not path:
        return None
    return (Path.cwd() / Path(os.path.expandvars(path)).expanduser()).parent


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    record = getattr(item, "_hil_record", None)
    if record is None:
        return (yield)
    phases = item.stash.setdefault(PHASES_KEY, {})
    recorded = None
    if call.when == "teardown":
        # before the report is made: it copies the item's properties (JUnit reads them there)
        duration = sum(r.duration for r in phases.values()) + call.duration
        recorded = record.snapshot(_outcome(phases), duration)
        item.user_properties.extend(recorded.junit_properties())
    report = yield
    phases[call.when] = report
    if recorded is not None:
        if record.log_dir is not None:
            try:
                recorded.write(record.log_dir)
            except OSError as e:  # the test's result stands; its report says what is missing
                report.sections.append(("embserve-hil report", f"{record.log_dir}/report.json not written: {e}"))
        base = _html_report_dir(item.config)
        if base is not None:
            from pytest_html import extras

            from .report.render import section

            page = section(recorded, base)
            if record.log_dir is not None and (record.log_dir / "metrics.json").is_file():
                page += _metrics_section(record.log_dir / "metrics.json")
            report.extras = [*getattr(report, "extras", []), extras.html(redact_text(page))]
    return report


def _metrics_section(path: Path) -> str:
    """The test's execution metrics (written by the node fixtures before this report is made), as plots."""
    from .metrics import read_metrics_json
    from .metrics.plot import metrics_section

    try:
        return metrics_section(read_metrics_json(path))
    except (OSError, ValueError) as e:  # the test's result stands; its report says what is missing
        return f"<p>execution metrics in {path} not shown: {e}</p>"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """With an HTML report to write, matplotlib is imported in the background as the first HIL test
    starts: its import is most of what the plots cost, and the test spends that time waiting on its device."""
    if "hil_test_record" in getattr(item, "fixturenames", ()):
        _warm_up(item.config)


def _warm_up(config: pytest.Config) -> None:
    if _WARMING_KEY in config.stash or _html_report_dir(config) is None:
        return
    from .report import plot

    if plot.available():
        warming = threading.Thread(target=plot.warm_up, name="embserve-hil report warm-up", daemon=True)
        warming.start()
        config.stash[_WARMING_KEY] = warming


# --------------------------------------------------------------------------- progress of long waits


class TerminalProgress:
    """Progress lines on pytest's terminal, each a whole line (so CI logs keep them whole).

    A line can only go between two of pytest's: after it, the file name (or,
    with ``-v``, the test's name) that pytest's result letter or word belongs
    to is written again, so ``....`` and ``PASSED`` stay where they belong.
    """

    def __init__(self, config: pytest.Config):
        self.config = config
        self.prefix: object = None  # what pytest had written on the line we broke

    def __call__(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(line, file=sys.stderr, flush=True)
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            if isinstance(reporter.currentfspath, (str, Path)):
                self.prefix = reporter.currentfspath
            if reporter._tw.width_of_current_line:
                reporter._tw.line()
            reporter._tw.line(line)
            reporter.currentfspath = None
            reporter.flush()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before pytest writes this result: put back what its line started with."""
        prefix, self.prefix = self.prefix, None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if prefix is None or reporter is None or reporter.currentfspath is not None:
            return
        text = prefix if isinstance(prefix, str) else os.path.relpath(prefix, reporter.startpath) + " "
        reporter.write(text, flush=True)
        reporter.currentfspath = prefix

    def pytest_runtest_logstart(self) -> None:
        self.prefix = None


def pytest_configure(config: pytest.Config) -> None:
    sink = TerminalProgress(config)
    config.pluginmanager.register(sink, "embserve-hil-progress")
    config.stash[_SINK_KEY] = progress.set_sink(sink)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_SINK_KEY, None)
    if previous is not None:
        progress.set_sink(previous)
    warming = config.stash.get(_WARMING_KEY, None)
    if warming is not None:
        warming.join(30)

