"""Execution metrics of a node: what a service costs the device.

Data only (no other part of ``hil`` is imported): the model a test asserts
on (:class:`DeviceMetrics`, with per-service :class:`ServiceCost` from the
simulator), the reader of Renode's profiler file (:mod:`.renode_profile`),
and the plots (:mod:`.plot`, with matplotlib when installed).
"""

from .cost import ServiceCost, Slice
from .device import DeviceMetrics, MetricsUnavailable, PeripheralRange, read_metrics_json, write_metrics_json
from .renode_profile import ProfileFormatError, ProfileParser, ProfileReader, parse_profile
from .series import Series

__all__ = [
    "DeviceMetrics", "MetricsUnavailable", "PeripheralRange", "ProfileFormatError", "ProfileParser", "ProfileReader",
    "Series", "ServiceCost", "Slice", "parse_profile", "read_metrics_json", "write_metrics_json",
]
