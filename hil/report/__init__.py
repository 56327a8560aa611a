"""What a HIL test reports to people and CI: its record, readings plots, HTML.

* :mod:`.record` — :class:`TestRecord` (told what happens during a test),
  :class:`RecordedTest` (frozen; JUnit properties; ``report.json``)
* :mod:`.plot` — readings plots as inline SVG (matplotlib, the ``report`` extra)
* :mod:`.render` — HTML of a test and of a whole session
* :mod:`.session` — a session's log folder read back (``embserve-hil report``)
"""

from .record import RecordedTest, ReportError, TestRecord, load
from .session import load_session, write_session_report

__all__ = ["RecordedTest", "ReportError", "TestRecord", "load", "load_session", "write_session_report"]
