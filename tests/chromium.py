"""Headless Chromium driven over the Chrome DevTools protocol, for the browser tests.

Why this and not Selenium or Playwright: `--remote-debugging-pipe` speaks the protocol over two
inherited file descriptors (JSON messages ended by a NUL byte), so the standard library is the whole
client. The only thing to install is the Debian `chromium` package: no chromium-driver, no Node.js,
no pip package, and the protocol gives exactly what the tests check (console messages, uncaught
exceptions, every network request the page makes, screenshots of a region).
"""

from __future__ import annotations

import base64
import fcntl
import functools
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

# ENVIRONMENT.md's flags, plus --enable-unsafe-swiftshader: with --disable-gpu WebGL runs on the
# SwiftShader software renderer, whose automatic fallback Chromium is phasing out.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--enable-unsafe-swiftshader", "--no-first-run",
    "--no-default-browser-check", "--mute-audio", "--window-size=1280,1000", "--hide-scrollbars",
)
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome binary ($DREAMTEXT_CHROMIUM first), or None."""
    explicit = os.environ.get("DREAMTEXT_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser binary; skips the test when there is none, except where $DREAMTEXT_REQUIRE_BROWSER
    is set (CI), where a missing browser is a failure."""
    import pytest

    binary = find_chromium()
    if binary is None:
        reason = "no Chromium found: install Debian's chromium package, or point $DREAMTEXT_CHROMIUM at a Chrome binary"
        if os.environ.get("DREAMTEXT_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def external_requests(requests: list[str], origin: str) -> list[str]:
    """Requests that went anywhere but `origin` (http://host:port, or its websocket); data: and blob:
    URLs stay inside the page."""
    host = urlsplit(origin).netloc
    return [url for url in requests
            if urlsplit(url).scheme not in ("data", "blob") and not (urlsplit(url).scheme in ("http", "ws") and urlsplit(url).netloc == host)]


@contextmanager
def serve_folder(folder: str | Path):
    """A quiet http.server for `folder` on a free local port; yields its origin (http://127.0.0.1:PORT)."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ProtocolError(RuntimeError):
    pass


@dataclass
class PageLog:
    """What one page did: console errors, uncaught exceptions, failed loads and every request URL."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.exceptions + self.failed_requests


class Chromium:
    """A headless browser process with one page; use as a context manager."""

    def __init__(self, binary: str, timeout_s: float = 30.0):
        self.binary = binary
        self.timeout_s = timeout_s
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self._events: list[dict] = []
        self._condition = threading.Condition()
        self.session: str | None = None
        self.log = PageLog()

    # -- process and transport ---------------------------------------------------------------------
    def __enter__(self) -> "Chromium":
        self._profile = tempfile.TemporaryDirectory(prefix="dreamtext-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def child_fds() -> None:  # the protocol pipe: Chromium reads fd 3 and writes fd 4
            # Copies above 10 first, so neither end is overwritten when the pipes already use 3 or 4.
            reading, writing = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write))
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.process = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}", "about:blank"],
            # close_fds=False: the descriptors dup2 makes are inheritable, while Python's own pipes
            # are close-on-exec, so only fds 3 and 4 (and stdio) reach Chromium.
            preexec_fn=child_fds, close_fds=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._reader = threading.Thread(target=self._read_messages, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", session=False, timeout_s=5.0)
        except Exception:  # noqa: BLE001 - the process is killed below anyway
            pass
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        self._profile.cleanup()

    def _read_messages(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        os.close(self._from_browser)
        with self._condition:
            self._condition.notify_all()

    def _dispatch(self, message: dict) -> None:
        with self._condition:
            if "id" in message:
                self._responses[message["id"]] = message
            else:
                self._events.append(message)
                self._record(message)
            self._condition.notify_all()

    def _record(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.log.console_errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.log.exceptions.append(details.get("exception", {}).get("description") or details.get("text", "?"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.log.console_errors.append(f"{entry.get('text')} ({entry.get('url', '')})")
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            self.log.requests.append(params["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.log.failed_requests.append(f"{params.get('errorText')} ({params.get('requestId')})")

    def call(self, method: str, session: bool = True, timeout_s: float | None = None, **params) -> dict:
        """Send one protocol command and wait for its result."""
        with self._condition:
            self._next_id += 1
            message_id = self._next_id
        message = {"id": message_id, "method": method, "params": params}
        if session and self.session is not None:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with self._condition:
            while message_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise ProtocolError(f"no answer to {method} (browser {'running' if self._reader.is_alive() else 'gone'})")
                self._condition.wait(left)
            response = self._responses.pop(message_id)
        if "error" in response:
            raise ProtocolError(f"{method}: {response['error']}")
        return response.get("result", {})

    # -- page helpers ------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        with self._condition:
            seen = len(self._events)
        self.call("Page.navigate", url=url)
        self.wait_for_event("Page.loadEventFired", after=seen)

    def wait_for_event(self, method: str, after: int = 0) -> dict:
        deadline = time.monotonic() + self.timeout_s
        with self._condition:
            while True:
                for event in self._events[after:]:
                    if event.get("method") == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError(f"timed out waiting for {method}")
                self._condition.wait(left)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout_s: float | None = None, interval_s: float = 0.1):
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise ProtocolError(f"timed out waiting for {expression!r} (last value {value!r})")
            time.sleep(interval_s)

    def screenshot(self, selector: str | None = None) -> np.ndarray:
        """RGB uint8 [H, W, 3] of the viewport, or of the element `selector` picks (CSS pixels)."""
        params: dict = {"format": "png"}
        if selector is not None:
            box = self.evaluate(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                " return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()"
            )
            params["clip"] = {**box, "scale": 1}
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def drag(self, selector: str, dx: float, dy: float, steps: int = 8) -> None:
        """Press the left button at the middle of `selector`, move by (dx, dy) CSS pixels, release."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        x, y = box["x"], box["y"]
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", buttons=1, clickCount=1)
        for i in range(1, steps + 1):
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x + dx * i / steps, y=y + dy * i / steps, button="left", buttons=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x + dx, y=y + dy, button="left", buttons=0, clickCount=1)
