"""Headless Chromium (Debian's ``chromium`` package, never a downloaded build) driven over the DevTools
protocol: a WebSocket through aiohttp, which meshpipe already depends on. Just what the dashboard's tests,
benchmark and screenshot need: open a page, evaluate script in it, wait for a condition, take a
screenshot. Every process it starts is ended by its own process-group id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars")
START_TIMEOUT_S = 30.0


def find_chromium() -> str | None:
    """The system Chromium: /usr/bin/chromium (Debian's package), else ``chromium`` on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


class BrowserError(AssertionError):
    pass


class Chromium:
    """One headless Chromium with a fresh profile, and its first tab."""

    def __init__(self, executable: str, width: int = 1400, height: int = 900) -> None:
        self.executable = executable
        self.width, self.height = width, height
        self.errors: list[str] = []  # uncaught exceptions and console errors of the page
        self.proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._loop = asyncio.new_event_loop()
        self._session: Any = None
        self._ws: Any = None
        self._ids = itertools.count(1)

    # -- life cycle --

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="meshpipe-chromium-")
        profile = Path(self._profile.name)
        self.proc = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port = self._devtools_port(profile)
            self._run(self._connect(port))
            self.call("Runtime.enable")
            self.call("Log.enable")
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            if self._ws is not None:
                self._run(self._ws.close())
            if self._session is not None:
                self._run(self._session.close())
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._loop.close()
        if self._profile is not None:
            self._profile.cleanup()

    @property
    def pids(self) -> list[int]:
        """Chromium's processes (its own process group), for CPU accounting."""
        if self.proc is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[2]) == self.proc.pid:
                        found.append(int(entry.name))
        return found

    def _devtools_port(self, profile: Path) -> int:
        marker = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BrowserError(f"{self.executable} exited with status {self.proc.returncode}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)
        raise BrowserError(f"{self.executable} did not open its DevTools port within {START_TIMEOUT_S:g} s")

    async def _connect(self, port: int) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise BrowserError("Chromium opened no tab")
            await asyncio.sleep(0.05)
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    # -- the protocol --

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        return dict(self._run(asyncio.wait_for(self._call(method, params), timeout)))

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        msg_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = await self._ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise BrowserError(f"the DevTools connection closed ({msg.type})")
            data = json.loads(msg.data)
            if data.get("id") == msg_id:
                if "error" in data:
                    raise BrowserError(f"{method}: {data['error']}")
                return dict(data.get("result", {}))
            self._note_event(data)

    def _note_event(self, data: dict[str, Any]) -> None:
        method, params = data.get("method"), data.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('text')} {entry.get('url') or ''}".strip())
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))

    # -- what tests use --

    def open(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait until its document (and deferred script) ran."""
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout,
                      f"loading {url}")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, what: str, every: float = 0.05) -> Any:
        """The first truthy value of ``expression``, polled in the page."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{what}: not within {timeout:g} s (page errors: {self.errors})")
            time.sleep(every)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        import base64

        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
