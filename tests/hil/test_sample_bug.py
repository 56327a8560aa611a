"""The shipped sample bug (hil/suites/sample_bug.py), run from the repository: ``pytest tests/hil``."""

from hil.suites.sample_bug import *  # noqa: F401,F403
