"""Bundles: everything needed to run a test's scenario again (docs/bundles.md).

``timeline`` records what the harness did to its devices; ``recorder`` writes
a run into a bundle directory; ``schema`` reads and checks ``bundle.json``.
Replaying one is :mod:`hil.replay`.
"""

from .recorder import Recorder
from .schema import VERSION, Bundle, BundleError, ServiceRecord, load_bundle
from .timeline import ACTIONS, Step, Timeline

__all__ = ["ACTIONS", "Bundle", "BundleError", "Recorder", "ServiceRecord", "Step", "Timeline", "VERSION", "load_bundle"]
