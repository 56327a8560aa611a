"""A Leshan-style REST API on the gateway, as FITA's kubelet and node watcher use it.

``async with RestApi(gateway) as api`` serves on a free loopback port; the
base URL is ``api.url`` (``http://127.0.0.1:PORT``). Calls:

================================================  =========================================
``GET /api/clients``                              every registration (JSON list)
``GET /api/clients/{ep}``                         one registration; 404 if unknown
``GET /api/clients/{ep}/{path}``                  Read (``?format=TLV|SENML_JSON|SENML_CBOR|TEXT|OPAQUE``;
                                                  without it the format chosen for the device)
``PUT /api/clients/{ep}/{path}``                  Write (Replace); body a Leshan node
``POST /api/clients/{ep}/{obj}``                  Create; body ``{"id": N, "kind": "instance", "resources": [...]}``
``POST /api/clients/{ep}/{obj}/{inst}``           Write (Partial Update); body an instance node
``POST /api/clients/{ep}/{obj}/{inst}/{res}``     Execute; the body, if any, is the argument text
``DELETE /api/clients/{ep}/{obj}/{inst}``         Delete
``POST /api/clients/{ep}/{path}/observe``         Observe; notifications as ``NOTIFICATION`` events
``DELETE /api/clients/{ep}/{path}/observe``       cancel that observation
``GET /api/clients/{ep}/composite?paths=/a,/b``   Read-Composite; content ``{"/a": node, ...}``
``PUT /api/clients/{ep}/composite``               Write-Composite; body ``{"/3/0/14": value or node, ...}``
``POST /api/clients/{ep}/composite/observe?paths=``  Observe-Composite (``DELETE`` cancels)
``GET /fleet``, ``/api/fleet``, ``/api/fleet/events``  the live fleet page, its data and its batched
                                                  updates (:mod:`hil.gateway.fleet_view`)
``GET /api/event``                                server-sent events: ``REGISTRATION``,
                                                  ``UPDATED`` (``{"registration": ...}``) and
                                                  ``DEREGISTRATION`` (on de-registration
                                                  and expiry), data = the registration JSON;
                                                  ``UNREACHABLE`` and ``REACHABLE`` (the gateway
                                                  lost or found the device again; the JSON says
                                                  ``reachable`` and ``unreachableReason``);
                                                  ``NOTIFICATION`` (``{"ep", "kind": "single"|"composite",
                                                  "res", "val"}``) for observations made here;
                                                  ``SEND`` (``{"ep", "val": {"/path": node}}``)
                                                  for every Send a device makes
================================================  =========================================

The composite calls take ``?format=SENML_JSON|SENML_CBOR`` too.

``?timeout=N`` (seconds) bounds the device request. Device answers, success
or not, come back as HTTP 200 with the Leshan envelope (``status``,
``success``...; see :mod:`hil.gateway.leshan`), as Leshan does; an unknown
client is HTTP 404, a malformed request HTTP 400, a device that does not
answer HTTP 504 and one that cannot be reached HTTP 502, each with the
envelope and an ``errormessage``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Self

from aiohttp import web

from ..lwm2m.model import LwM2MError, Path
from . import leshan
from .fleet_view import FleetPage, FleetView
from .errors import (
    GatewayDecodeError,
    GatewayError,
    GatewayRequestError,
    GatewayTimeout,
    GatewayTransportError,
    UnknownEndpoint,
)
from .registry import RegistrationEvent

FORMATS = {"TLV": "tlv", "SENML_JSON": "senml", "SENML_CBOR": "senml_cbor", "TEXT": "text", "OPAQUE": "opaque"}
EVENT_NAMES = {
    "registered": "REGISTRATION", "updated": "UPDATED", "deregistered": "DEREGISTRATION", "expired": "DEREGISTRATION",
    "unreachable": "UNREACHABLE", "reachable": "REACHABLE",
}
_END = object()


class RestApi:
    """The gateway's Leshan-style HTTP API; see the module docs."""

    def __init__(self, gateway: Any, host: str = "127.0.0.1", port: int = 0, *, log: logging.Logger | None = None,
                 fleet_view: FleetView | None = None):
        """``fleet_view``: the view the fleet page shows (default: one of its own on ``gateway``)."""
        self.gateway = gateway
        self._own_fleet_view = fleet_view is None
        self.fleet_view = fleet_view
        self.fleet_page: FleetPage | None = None
        self.host = host
        self.port = port
        self.log = log or logging.getLogger("hil.gateway.rest")
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Queue[Any]] = set()
        self._remove_listener: Any = None
        self._remove_report_listener: Any = None
        self._observations: dict[tuple[str, str], Any] = {}  # (endpoint, "/path" or "composite /a,/b") -> observation
        self.requests = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ lifetime

    async def start(self) -> Self:
        app = web.Application()
        if self.fleet_view is None:
            self.fleet_view = FleetView(self.gateway)
        self.fleet_page = FleetPage(self.fleet_view, log=self.log)
        app.add_routes(self.fleet_page.routes())
        app.add_routes(
            [
                web.get("/api/event", self._events),
                web.get("/api/clients", self._clients),
                web.get("/api/clients/{ep}", self._client),
                web.get("/api/clients/{ep}/composite", self._read_composite),
                web.put("/api/clients/{ep}/composite", self._write_composite),
                web.post("/api/clients/{ep}/composite/observe", self._observe_composite),
                web.delete("/api/clients/{ep}/composite/observe", self._cancel_composite),
                web.post("/api/clients/{ep}/{path:[0-9/]+}/observe", self._observe),
                web.delete("/api/clients/{ep}/{path:[0-9/]+}/observe", self._cancel),
                web.get("/api/clients/{ep}/{path:[0-9/]+}", self._read),
                web.put("/api/clients/{ep}/{path:[0-9/]+}", self._write),
                web.post("/api/clients/{ep}/{path:[0-9/]+}", self._post),
                web.delete("/api/clients/{ep}/{path:[0-9/]+}", self._delete),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._remove_listener = self.gateway.add_listener(self._on_registration)
        add_report_listener = getattr(self.gateway, "add_report_listener", None)
        if add_report_listener is not None:
            self._remove_report_listener = add_report_listener(self._on_report)
        self.log.info("REST API listening on %s/api", self.url)
        return self

    async def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._remove_report_listener is not None:
            self._remove_report_listener()
            self._remove_report_listener = None
        for obs in self._observations.values():
            obs.cancel("the REST API closed")
        self._observations.clear()
        for queue in list(self._streams):
            queue.put_nowait(_END)
        if self.fleet_page is not None:
            self.fleet_page.close()
        if self._own_fleet_view and self.fleet_view is not None:
            self.fleet_view.close()
            self.fleet_view = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self.log.info("REST API on %s closed", self.url)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ registrations

    async def _clients(self, request: web.Request) -> web.Response:
        self.requests += 1
        regs = sorted(self.gateway.registrations.values(), key=lambda r: r.endpoint)
        return web.json_response([leshan.registration_json(r) for r in regs])

    async def _client(self, request: web.Request) -> web.Response:
        self.requests += 1
        endpoint = request.match_info["ep"]
        reg = self.gateway.registrations.get(endpoint)
        if reg is None:
            return _unknown(endpoint)
        return web.json_response(leshan.registration_json(reg))

    # ------------------------------------------------------------------ device management

    async def _read(self, request: web.Request) -> web.Response:
        async def read(endpoint: str, path: Path, timeout: float | None) -> web.Response:
            content = await self.gateway.read(endpoint, path, _format(request), timeout=timeout)
            return _answer(69, leshan.node_json(content, path))

        return await self._device_call(request, read)

    async def _write(self, request: web.Request) -> web.Response:
        async def write(endpoint: str, path: Path, timeout: float | None) -> web.Response:
            if path.inst is None:
                raise leshan.NodeError(f"PUT needs an instance or resource path, got {path}")
            content = leshan.content_from_json(await _body(request), path)
            await self.gateway.write(endpoint, path, content, replace=True, fmt=_format(request), timeout=timeout)
            return _answer(68)

        return await self._device_call(request, write)

    async def _post(self, request: web.Request) -> web.Response:
        async def post(endpoint: str, path: Path, timeout: float | None) -> web.Response:
            if path.inst is None:
                node = await _body(request)
                if isinstance(node, dict) and node.get("id") is None and not node.get("resources"):
                    content, inst = {}, None  # the device picks the id
                else:
                    content = leshan.content_from_json(node, path)
                    inst = node["id"]
                created = await self.gateway.create(endpoint, path, content, instance_id=inst, fmt=_format(request), timeout=timeout)
                return _answer(65, {"kind": "instance", "id": created.inst, "resources": []})
            if path.res is None:
                content = leshan.content_from_json(await _body(request), path)
                await self.gateway.write(endpoint, path, content, replace=False, fmt=_format(request), timeout=timeout)
                return _answer(68)
            arg = await request.read()
            await self.gateway.execute(endpoint, path, arg or None, timeout=timeout)
            return _answer(68)

        return await self._device_call(request, post)

    async def _observe(self, request: web.Request) -> web.Response:
        async def observe(endpoint: str, path: Path, timeout: float | None) -> web.Response:
            key = (endpoint, str(path))
            if key in self._observations and self._observations[key].active:
                latest = self._observations[key].latest
                return _answer(69, leshan.node_json(latest.content, path) if latest else None)
            obs = await self.gateway.observe(endpoint, path, _format(request), timeout=timeout)
            self._watch(key, obs)
            return _answer(69, leshan.node_json(obs.latest.content, path) if obs.latest else None)

        return await self._device_call(request, observe)

    async def _cancel(self, request: web.Request) -> web.Response:
        async def cancel(endpoint: str, path: Path, timeout: float | None) -> web.Response:
            return self._cancel_key((endpoint, str(path)))

        return await self._device_call(request, cancel)

    async def _read_composite(self, request: web.Request) -> web.Response:
        async def read(endpoint: str, paths: list[Path], timeout: float | None) -> web.Response:
            content = await self.gateway.read_composite(endpoint, paths, _format(request), timeout=timeout)
            return _answer(69, leshan.composite_json(content, paths))

        return await self._composite_call(request, read)

    async def _write_composite(self, request: web.Request) -> web.Response:
        async def write(endpoint: str, _: list[Path], timeout: float | None) -> web.Response:
            content = leshan.composite_content_from_json(await _body(request))
            await self.gateway.write_composite(endpoint, content, _format(request), timeout=timeout)
            return _answer(68)

        return await self._composite_call(request, write, paths_required=False)

    async def _observe_composite(self, request: web.Request) -> web.Response:
        async def observe(endpoint: str, paths: list[Path], timeout: float | None) -> web.Response:
            key = (endpoint, "composite " + ",".join(map(str, paths)))
            if key not in self._observations or not self._observations[key].active:
                obs = await self.gateway.observe_composite(endpoint, paths, _format(request), timeout=timeout)
                self._watch(key, obs, paths)
            latest = self._observations[key].latest
            return _answer(69, leshan.composite_json(latest.content, paths) if latest else None)

        return await self._composite_call(request, observe)

    async def _cancel_composite(self, request: web.Request) -> web.Response:
        async def cancel(endpoint: str, paths: list[Path], timeout: float | None) -> web.Response:
            return self._cancel_key((endpoint, "composite " + ",".join(map(str, paths))))

        return await self._composite_call(request, cancel)

    def _watch(self, key: tuple[str, str], obs: Any, paths: list[Path] | None = None) -> None:
        self._observations[key] = obs

        def notify(note: Any) -> None:
            if paths is None:
                data = {"ep": note.endpoint, "kind": "single", "res": str(note.path), "val": leshan.node_json(note.content, note.path)}
            else:
                data = {"ep": note.endpoint, "kind": "composite", "val": leshan.composite_json(note.content, paths)}
            self._publish("NOTIFICATION", data)

        obs.add_listener(notify)

    def _cancel_key(self, key: tuple[str, str]) -> web.Response:
        obs = self._observations.pop(key, None)
        if obs is None:
            return _answer(132, error=f"no observation of {key[1]} on {key[0]} was made through this API", http_status=404)
        obs.cancel("cancelled through the REST API")
        return _answer(69)

    async def _composite_call(self, request: web.Request, call: Any, paths_required: bool = True) -> web.Response:
        async def with_paths(endpoint: str, _: Path, timeout: float | None) -> web.Response:
            text = request.query.get("paths", "")
            paths = [Path.parse(p) for p in text.split(",") if p.strip()]
            if paths_required and not paths:
                raise ValueError("composite operations need ?paths=/obj/inst/res,/obj/inst,... (at least one)")
            return await call(endpoint, paths, timeout)

        return await self._device_call(request, with_paths, path_in_url=False)

    async def _delete(self, request: web.Request) -> web.Response:
        async def delete(endpoint: str, path: Path, timeout: float | None) -> web.Response:
            await self.gateway.delete(endpoint, path, timeout=timeout)
            return _answer(66)

        return await self._device_call(request, delete)

    async def _device_call(self, request: web.Request, call: Any, path_in_url: bool = True) -> web.Response:
        self.requests += 1
        endpoint = request.match_info["ep"]
        try:
            path = Path.parse(request.match_info["path"]) if path_in_url else Path(0)
            timeout = _timeout(request)
            if endpoint not in self.gateway.registrations:
                return _unknown(endpoint)
            return await call(endpoint, path, timeout)
        except UnknownEndpoint:
            return _unknown(endpoint)
        except GatewayRequestError as exc:
            return _answer(exc.code_number or 160, error=exc.diagnostic or str(exc))
        except GatewayTimeout as exc:
            return _answer(164, error=str(exc), http_status=504)
        except (GatewayTransportError, GatewayDecodeError) as exc:
            return _answer(162, error=str(exc), http_status=502)
        except (LwM2MError, ValueError) as exc:
            return _answer(128, error=f"{request.method} {request.path}: {exc}", http_status=400)
        except GatewayError as exc:
            self.log.exception("%s %s failed", request.method, request.path)
            return _answer(160, error=str(exc), http_status=500)

    # ------------------------------------------------------------------ events

    def _on_registration(self, event: RegistrationEvent) -> None:
        name = EVENT_NAMES[event.kind]
        data = leshan.registration_json(event.registration)
        if name == "UPDATED":
            data = {"registration": data}
        self._publish(name, data)
        if event.kind in ("deregistered", "expired"):
            for key in [k for k in self._observations if k[0] == event.endpoint]:
                self._observations.pop(key).cancel(f"{event.endpoint} {event.kind}")

    def _on_report(self, notification: Any) -> None:
        if notification.kind == "send":
            self._publish("SEND", {"ep": notification.endpoint, "val": leshan.send_json(notification.content)})

    def _publish(self, name: str, data: Any) -> None:
        message = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for queue in self._streams:
            queue.put_nowait(message)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams.add(queue)
        try:
            # a comment line first, so a client knows the stream is live before any event
            await response.write(b": embserve-hil gateway events\n\n")
            while True:
                item = await queue.get()
                if item is _END:
                    break
                await response.write(item)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._streams.discard(queue)
        return response


def _unknown(endpoint: str) -> web.Response:
    return web.json_response(leshan.envelope(132, error=f"no registered client with id {endpoint!r}"), status=404)


def _answer(code: int, content: Any = None, *, error: str | None = None, http_status: int = 200) -> web.Response:
    return web.json_response(leshan.envelope(code, content, error), status=http_status)


def _format(request: web.Request) -> str | None:
    name = request.query.get("format")
    if name is None:
        return None
    try:
        return FORMATS[name.upper()]
    except KeyError:
        raise ValueError(f"format={name!r}: use one of {', '.join(FORMATS)}") from None


def _timeout(request: web.Request) -> float | None:
    text = request.query.get("timeout")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"timeout={text!r}: expected a positive number of seconds")
    return value


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise leshan.NodeError(f"{request.method} {request.path} needs a JSON body (a Leshan node)")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise leshan.NodeError(f"body is not JSON: {exc}") from None
