"""The live fleet page: every node as the gateway sees it, for a person watching in a browser.

:class:`FleetView` listens to the gateway (registrations, every notification
and Send) and keeps one row per node: registered or not, services deployed
(``/9`` instances), readings (IPSO Sensor Value, resource 5700) with the last
value, errors. :class:`FleetPage` serves it:

========================  ====================================================
``GET /fleet``            the page (HTML and vanilla JS shipped in
                          ``hil.resources``; no build step)
``GET /api/fleet``        the whole view as JSON
``GET /api/fleet/events`` server-sent events, one ``FLEET`` event per
                          ``?interval=`` seconds (default 0.5): the rows that
                          changed since the last one, the fleet's totals and
                          the errors that are new; the first is the whole view
========================  ====================================================

Batching is what lets a browser keep up with a thousand nodes each reporting
every second: it gets two messages a second, not a thousand, and the page
applies each in one animation frame. The gateway's REST API serves the page
(:class:`~hil.gateway.rest.RestApi`), and ``embserve-hil fleet --http PORT``
on a port of its own (:class:`FleetPageServer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from ..resources import ResourceError, fleet_page_file
from .registry import RegistrationEvent

SENSOR_VALUE = 5700  # IPSO Sensor Value: what counts as a reading
COLUMNS = ("endpoint", "state", "services", "readings", "value", "path", "time", "errors", "error", "reporting")
DEFAULT_INTERVAL = 0.5
KEPT_ERRORS = 200


@dataclass
class NodeRow:
    endpoint: str
    state: str = "registered"  # registered, deregistered, expired
    services: int = 0  # /9 instances the node announces
    readings: int = 0
    value: Any = None
    path: str = ""
    time: float | None = None  # epoch seconds of the last reading
    errors: int = 0
    error: str = ""
    version: int = 0  # the view's version when this row last changed
    reporting: bool = False

    def as_list(self) -> list[Any]:
        return [self.endpoint, self.state, self.services, self.readings, self.value, self.path, self.time,
                self.errors, self.error, self.reporting]


class FleetView:
    """Per-node state of the nodes registered at ``gateway``; see the module docs.

    ``reporting_window``: a node is *reporting* while its last reading is at
    most this many seconds old.
    """

    def __init__(self, gateway: Any, *, reporting_window: float = 60.0, rate_window: float = 5.0):
        self.gateway = gateway
        self.reporting_window = reporting_window
        self.rate_window = rate_window
        self.rows: dict[str, NodeRow] = {}
        self.version = 0
        self.readings = 0
        self.errors: deque[tuple[int, float, str, str]] = deque(maxlen=KEPT_ERRORS)  # (version, time, endpoint, text)
        self._per_second: deque[list[float]] = deque()  # [whole second, readings in it]
        self._removers = [gateway.add_listener(self._on_registration)]
        add_report_listener = getattr(gateway, "add_report_listener", None)
        if add_report_listener is not None:
            self._removers.append(add_report_listener(self._on_report))
        for reg in list(gateway.registrations.values()):
            self._row(reg.endpoint).services = len(reg.available_instances.get(9, []))

    def close(self) -> None:
        for remove in self._removers:
            remove()
        self._removers.clear()

    # ------------------------------------------------------------------ what the gateway tells

    def _row(self, endpoint: str) -> NodeRow:
        row = self.rows.get(endpoint)
        if row is None:
            row = self.rows[endpoint] = NodeRow(endpoint)
        self.version += 1
        row.version = self.version
        return row

    def _on_registration(self, event: RegistrationEvent) -> None:
        row = self._row(event.endpoint)
        if event.kind in ("registered", "updated"):
            row.state = "registered"
            row.services = len(event.registration.available_instances.get(9, []))
        else:
            row.state = event.kind
            if event.kind == "expired":
                self._note_error(row, f"registration expired{': ' + event.reason if event.reason else ''}")

    def _on_report(self, notification: Any) -> None:
        values = [(p, v) for p, v in notification.content.items() if getattr(p, "res", None) == SENSOR_VALUE]
        if not values:
            return
        row = self._row(notification.endpoint)
        path, value = values[-1]
        row.readings += len(values)
        row.value = value if isinstance(value, (int, float, str, bool)) else str(value)
        row.path = str(path)
        row.time = notification.timestamp
        row.reporting = True
        self.readings += len(values)
        second = int(notification.timestamp)
        if self._per_second and self._per_second[-1][0] == second:
            self._per_second[-1][1] += len(values)
        else:
            self._per_second.append([second, len(values)])

    def error(self, endpoint: str, text: str) -> None:
        """Something went wrong with a node (a deploy that failed, ...): counted and shown on its row."""
        self._note_error(self._row(endpoint), text)

    def _note_error(self, row: NodeRow, text: str) -> None:
        row.errors += 1
        row.error = text
        self.errors.append((self.version, time.time(), row.endpoint, text))

    # ------------------------------------------------------------------ what the page gets

    def _expire(self, now: float) -> None:
        """Nodes whose last reading became too old stop counting as reporting (a change of their row)."""
        for row in self.rows.values():
            if row.reporting and (row.time is None or now - row.time > self.reporting_window):
                row.reporting = False
                self.version += 1
                row.version = self.version

    def rate(self, now: float) -> float:
        """Readings per second over the last ``rate_window`` whole seconds."""
        current = int(now)
        while self._per_second and self._per_second[0][0] < current - self.rate_window:
            self._per_second.popleft()
        done = sum(n for second, n in self._per_second if second < current)
        return done / self.rate_window

    def totals(self, now: float) -> dict[str, Any]:
        rows = self.rows.values()
        registered = [r for r in rows if r.state == "registered"]
        return {
            "nodes": len(self.rows),
            "registered": len(registered),
            "deployed": sum(1 for r in registered if r.services),
            "reporting": sum(1 for r in registered if r.reporting),
            "readings": self.readings,
            "rate": round(self.rate(now), 2),
            "errors": sum(r.errors for r in rows),
        }

    def batch(self, since: int, seq: int) -> tuple[int, dict[str, Any]]:
        """What changed after version ``since``: (the version it brings the page to, the message)."""
        now = time.time()
        self._expire(now)
        changed = [r for r in self.rows.values() if r.version > since]
        message = {
            "seq": seq,
            "now": now,
            "full": since < 0,
            "window": self.reporting_window,
            "totals": self.totals(now),
            "columns": COLUMNS,
            "nodes": [r.as_list() for r in changed],
            "errors": [[t, ep, text] for v, t, ep, text in self.errors if v > since],
        }
        return self.version, message


class FleetPage:
    """The page's routes over a :class:`FleetView`; added to an aiohttp application."""

    def __init__(self, view: FleetView, *, log: logging.Logger | None = None):
        self.view = view
        self.log = log or logging.getLogger("hil.gateway.fleet")
        self._closed = asyncio.Event()
        self.streams = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/fleet", self._page),
            web.get("/fleet/{name:[a-z_]+\\.(?:js|css)}", self._asset),
            web.get("/api/fleet", self._snapshot),
            web.get("/api/fleet/events", self._events),
        ]

    def close(self) -> None:
        """End every event stream (the server can then stop without waiting for browsers)."""
        self._closed.set()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=fleet_page_file("index.html").read_bytes(), content_type="text/html", charset="utf-8")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            body = fleet_page_file(name).read_bytes()
        except ResourceError:
            raise web.HTTPNotFound(text=f"no {name} in the fleet page") from None
        kind = "application/javascript" if name.endswith(".js") else "text/css"
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def _snapshot(self, request: web.Request) -> web.Response:
        _, message = self.view.batch(-1, 0)
        return web.json_response(message)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        text = request.query.get("interval", str(DEFAULT_INTERVAL))
        try:
            interval = float(text)
        except ValueError:
            interval = -1.0
        if not 0.05 <= interval <= 60:
            raise web.HTTPBadRequest(text=f"interval={text!r}: expected seconds between 0.05 and 60")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        self.streams += 1
        since, seq = -1, 0
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while not self._closed.is_set():
                since, message = self.view.batch(since, seq)
                seq += 1
                data = json.dumps(message, separators=(",", ":"), default=str)
                await response.write(f"event: FLEET\ndata: {data}\n\n".encode())
                due += interval  # a steady cadence, however long a batch took to make and send
                if due <= loop.time():  # running late: start again from now rather than catch up
                    due = loop.time() + interval
                try:
                    await asyncio.wait_for(self._closed.wait(), due - loop.time())
                except TimeoutError:
                    pass
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the browser went away, or the server is stopping
        finally:
            self.streams -= 1
        return response


class FleetPageServer:
    """The fleet page on a port of its own: ``async with FleetPageServer(view, port=8080) as page: page.url``."""

    def __init__(self, view: FleetView, host: str = "127.0.0.1", port: int = 0, *, log: logging.Logger | None = None):
        self.page = FleetPage(view, log=log)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/fleet"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.add_routes(self.page.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.page.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
