"""FleetView, the live fleet page's state: what counts as a reading, and which rows a batch carries."""

from __future__ import annotations

import time

from hil.gateway.fleet_view import FleetView
from hil.gateway.observe import Notification
from hil.lwm2m import Path as LwPath


def test_fleet_view_counts_only_sensor_values_and_batches_changed_rows_with_fake_gateway():
    class FakeGateway:  # the two listener hooks FleetView uses, nothing else
        registrations: dict = {}

        def __init__(self):
            self.listeners, self.reports = [], []

        def add_listener(self, listener):
            self.listeners.append(listener)
            return lambda: self.listeners.remove(listener)

        def add_report_listener(self, listener):
            self.reports.append(listener)
            return lambda: self.reports.remove(listener)

    gw = FakeGateway()
    view = FleetView(gw, reporting_window=60)
    now = time.time()
    for ep, value in (("a", 20.5), ("b", 30.0)):
        note = Notification(ep, LwPath(3303, 0, 5700), {LwPath(3303, 0, 5700): value}, now, 1, None)
        gw.reports[0](note)
    gw.reports[0](Notification("a", LwPath(3, 0, 13), {LwPath(3, 0, 13): 12345}, now, 2, None))  # not a reading
    version, message = view.batch(-1, 0)
    rows = {r[0]: dict(zip(message["columns"], r)) for r in message["nodes"]}
    assert rows["a"]["readings"] == 1 and rows["a"]["value"] == 20.5 and rows["b"]["value"] == 30.0
    assert view.readings == 2
    later = Notification("b", LwPath(3303, 0, 5700), {LwPath(3303, 0, 5700): 31.0}, now + 1, 2, None)
    gw.reports[0](later)
    _, changed = view.batch(version, 1)
    assert [r[0] for r in changed["nodes"]] == ["b"] and not changed["full"]
    view.close()
    assert gw.listeners == [] and gw.reports == []
