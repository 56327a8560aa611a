"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

Each :class:`Chromium` starts its own browser with a fresh profile, no network
beyond loopback (every host name but 127.0.0.1 fails to resolve, no
background services, no QUIC), and a DevTools port the OS picks; the test
talks to it over a WebSocket (aiohttp). :meth:`Chromium.open` gives a
:class:`Page` to evaluate JavaScript in, wait on, screenshot and measure
(``Performance.getMetrics``: how long the renderer's main thread was busy);
:meth:`Chromium.cpu_seconds` is the CPU time of all the browser's processes.

The benchmarks use it too (``benchmarks/bench_fleet_page.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "chromium"
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserError(AssertionError):
    """The browser did not start, or a DevTools call failed; says which and what it printed."""


def chromium_path() -> str | None:
    return shutil.which(CHROMIUM)


class Chromium:
    """``async with Chromium(log_dir) as browser: page = await browser.open(url)``."""

    def __init__(self, log_dir: Path, *, width: int = 1280, height: int = 900):
        self.log_dir = Path(log_dir)
        self.width, self.height = width, height
        self.log_path = self.log_dir / "chromium.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._profile: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._events: dict[tuple[str | None, str], list[asyncio.Future[Any]]] = {}

    async def __aenter__(self) -> "Chromium":
        exe = chromium_path()
        if exe is None:
            raise BrowserError("chromium is not installed: apt-get install chromium (scripts/bootstrap.sh does)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="hil-chromium-")
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
            "--disable-extensions", "--disable-default-apps", "--mute-audio", "--no-default-browser-check",
            "--disable-breakpad", "--disable-crash-reporter",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            f"--user-data-dir={self._profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--window-size={self.width},{self.height}", "about:blank",
        ]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
            url = await self._devtools_url()
            self._http = aiohttp.ClientSession()
            self._ws = await self._http.ws_connect(url, max_msg_size=0)
            self._reader = asyncio.create_task(self._read())
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _devtools_url(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        seen: list[str] = []
        log = open(self.log_path, "w", encoding="utf-8", errors="replace")

        async def first_line() -> str:
            while True:
                raw = await self._proc.stderr.readline()
                if not raw:
                    raise BrowserError(f"chromium exited (status {await self._proc.wait()}) before its DevTools port"
                                       f" was open; it printed:\n" + "".join(seen[-20:]) + f"(log: {self.log_path})")
                line = raw.decode(errors="replace")
                seen.append(line)
                log.write(line)
                m = _LISTENING.search(line)
                if m:
                    return m.group(1)

        try:
            url = await asyncio.wait_for(first_line(), START_TIMEOUT)
        except TimeoutError:
            log.close()
            raise BrowserError(f"chromium did not open its DevTools port within {START_TIMEOUT:g} s; it printed:\n"
                               + "".join(seen[-20:]) + f"(log: {self.log_path})") from None
        except BaseException:
            log.close()
            raise
        self._stderr = asyncio.create_task(self._keep_log(log))
        return url

    async def _keep_log(self, log: Any) -> None:
        try:
            while raw := await self._proc.stderr.readline():
                log.write(raw.decode(errors="replace"))
        finally:
            log.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._calls.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(BrowserError(f"DevTools call failed: {data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
            else:
                for future in self._events.pop((data.get("sessionId"), data["method"]), []):
                    if not future.done():
                        future.set_result(data.get("params", {}))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(BrowserError(f"the browser closed its DevTools connection (log: {self.log_path})"))

    async def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
                   timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        assert self._ws is not None, "the browser is not running"
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[ident] = future
        message = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_str(json.dumps(message))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrowserError(f"DevTools {method} got no answer within {timeout:g} s (log: {self.log_path})") from None
        finally:
            self._calls.pop(ident, None)

    def event(self, method: str, session: str | None = None) -> asyncio.Future[Any]:
        """A future for the next ``method`` event (register it before causing the event)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._events.setdefault((session, method), []).append(future)
        return future

    async def open(self, url: str, timeout: float = CALL_TIMEOUT) -> "Page":
        """A new tab, loaded with ``url`` (its load event seen)."""
        target = await self.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Performance"):
            await page.call(f"{domain}.enable")
        loaded = self.event("Page.loadEventFired", page.session)
        navigated = await page.call("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise BrowserError(f"cannot open {url}: {navigated['errorText']}")
        try:
            await asyncio.wait_for(loaded, timeout)
        except TimeoutError:
            raise BrowserError(f"{url} did not finish loading within {timeout:g} s") from None
        return page

    async def cpu_seconds(self) -> float:
        """CPU time of every process of the browser (browser, renderers, GPU, network), summed."""
        info = await self.call("SystemInfo.getProcessInfo")
        return sum(p["cpuTime"] for p in info["processInfo"])

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the browser and the helpers it started, its own group
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._stderr is not None:
            await asyncio.gather(self._stderr, return_exceptions=True)
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None


class Page:
    """One tab of a :class:`Chromium`."""

    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.call(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                      "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript failed: {text}\n  in: {expression[:300]}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 10.0) -> Any:
        """Poll a JavaScript expression until it is truthy; fails naming ``what`` and the last value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"{what}: not seen within {timeout:g} s (last: {value!r}; {expression})")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> Path:
        """The whole page (beyond the window) as PNG."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = await self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1},
        })
        path = Path(path)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def metrics(self) -> dict[str, float]:
        """Chromium's performance counters of this page (TaskDuration: main-thread seconds busy, ...)."""
        result = await self.call("Performance.getMetrics")
        return {m["name"]: m["value"] for m in result["metrics"]}
