"""Headless Chromium for tests, driven through chromedriver's W3C WebDriver HTTP API with the standard library.

Debian's `chromium` and `chromium-driver` packages (`.ci/run` installs them); no Selenium: the few WebDriver
commands a test needs (new session, navigate, execute script, browser log, screenshot) are plain JSON over HTTP.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.helpers import free_port

# Chromium as root in a container with the network closed: no sandbox (it needs user namespaces), no GPU, and none
# of the background fetches (updates, sync, safe browsing lists) that would wait on the network.
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--hide-scrollbars")


def binaries() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths, None where not installed."""
    return (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"),
            shutil.which("chromedriver"))


class WebDriverError(RuntimeError):
    pass


class Browser:
    """One chromedriver process and one headless Chromium session; use as a context manager."""

    def __init__(self, chromium: str, chromedriver: str, width: int = 1280, height: int = 900):
        self._chromium, self._chromedriver, self._size = chromium, chromedriver, (width, height)
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")  # a fresh profile every time
        self._port = free_port()
        self._driver: subprocess.Popen | None = None
        self._session = ""

    def __enter__(self) -> "Browser":
        self._driver = subprocess.Popen([self._chromedriver, f"--port={self._port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if self._driver.poll() is not None or time.monotonic() > deadline:
                raise WebDriverError("chromedriver did not start in 30 s")
            time.sleep(0.1)
        width, height = self._size
        options = {"binary": self._chromium,
                   "args": [*CHROMIUM_ARGS, f"--window-size={width},{height}", f"--user-data-dir={self._profile}"]}
        value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}}})
        self._session = value["sessionId"]
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._session:
                self._call("DELETE", f"/session/{self._session}")
        finally:
            if self._driver is not None:
                self._driver.terminate()
                self._driver.wait(timeout=30)
            shutil.rmtree(self._profile, ignore_errors=True)

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self._port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as e:  # WebDriver errors come back as JSON {"value": {"error", "message"}}
            error = json.loads(e.read() or b"{}").get("value", {})
            raise WebDriverError(f"{method} {path}: {error.get('error')}: {error.get('message')}") from None

    def _session_call(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self._session}{path}", body)

    def open(self, url: str) -> None:
        """Navigates and returns once the page has loaded (WebDriver's default page load strategy: `complete`)."""
        self._session_call("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """The value of a JavaScript function body (`return ...`) run in the page."""
        return self._session_call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def console(self) -> list[dict]:
        """Browser log entries since the last call: {level: SEVERE|WARNING|INFO, message, ...}."""
        return self._session_call("POST", "/se/log", {"type": "browser"})

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._session_call("GET", "/screenshot")))
        return path
