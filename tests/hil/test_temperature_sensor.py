"""The shipped HIL suite (hil/suites/temperature.py), run from the repository: ``pytest tests/hil``.

The tests live in the package so a bench host without a checkout runs the same
ones (``pytest --pyargs hil.suites.temperature``); importing them here is what
collects them in tests/hil, module mark (``hil``) included.
"""

from hil.suites.temperature import *  # noqa: F401,F403
