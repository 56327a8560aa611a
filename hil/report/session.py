"""A session's log folder read back: every test's ``report.json``, and the page made of them."""

from __future__ import annotations

from pathlib import Path

from .record import FILE_NAME, RecordedTest, ReportError, load
from .render import session_page


def load_session(log_dir: Path) -> list[RecordedTest]:
    """The recorded tests under ``log_dir`` (a session's ``--hil-log-dir``), in the order they ran."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise ReportError(f"{log_dir}: no such log folder")
    found = sorted(log_dir.rglob(FILE_NAME))
    if not found:
        raise ReportError(f"{log_dir}: no {FILE_NAME} in it or below; is it a session's log folder "
                          f"(--hil-log-dir) from a run of HIL tests?")
    return sorted((load(p) for p in found), key=lambda t: t.started)


def write_session_report(log_dir: Path, out: Path | None = None) -> tuple[Path, list[RecordedTest]]:
    """The session's HTML report, written whole (``out``; default ``LOG_DIR/report.html``)."""
    log_dir = Path(log_dir)
    tests = load_session(log_dir)
    out = Path(out) if out is not None else log_dir / "report.html"
    if out.is_dir():
        raise ReportError(f"{out}: is a folder; give the report's file name")
    page = session_page(tests, f"embserve-hil report: {log_dir.resolve().name}", out.absolute().parent)
    partial = out.with_name(out.name + ".partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(page, encoding="utf-8")
        partial.replace(out)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise ReportError(f"{out}: cannot write the report: {e.strerror or e}") from None
    return out, tests
