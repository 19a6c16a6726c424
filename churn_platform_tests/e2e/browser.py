"""Headless Chromium driven over the Chrome DevTools Protocol, for the UI tests.

Chromium is Debian's (/usr/bin/chromium); `scripts/ensure_chromium.sh` installs it and `make test`
runs that script first.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")
# The flags of the machine's own Chromium check: without the background-networking ones,
# Chromium's calls home are refused by the closed network, many at a time.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1600,1000", "--remote-debugging-port=0",
]
STARTUP_TIMEOUT = 30
ALT = 1  # the Alt bit of a DevTools input event's modifiers


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page, saving screenshots to a folder."""

    def __init__(self, websocket: ClientConnection, screenshot_dir: Path):
        self._websocket = websocket
        self._ids = itertools.count(1)
        self._screenshots = (screenshot_dir / f"page-{n}.png" for n in itertools.count(1))

    def call(self, method: str, **params) -> dict:
        """Send a command and return its result, skipping the events in between."""
        command_id = next(self._ids)
        self._websocket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._websocket.recv(timeout=30))
            if message.get("id") == command_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def press_alt(self, code: str) -> None:
        """Press and release Alt+`code` (a KeyboardEvent.code such as "KeyE")."""
        key = code.removeprefix("Key").lower()
        for event_type in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=event_type, modifiers=ALT, code=code, key=key)

    def screenshot(self) -> Path:
        """Save a PNG of the viewport and return its path."""
        path = next(self._screenshots)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
        return path


def _devtools_port(user_data_dir: Path, proc: subprocess.Popen) -> int:
    """The port Chromium chose for DevTools, from the file it writes once it listens."""
    port_file = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None:
            pytest.fail(f"chromium exited with {proc.returncode} before DevTools listened")
        if time.monotonic() > deadline:
            pytest.fail(f"chromium's DevTools not listening after {STARTUP_TIMEOUT} s")
        time.sleep(0.2)
    return int(port_file.read_text().splitlines()[0])


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL Chromium's whole process group (browser, zygotes, renderers) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def chromium_page(tmp_path: Path) -> Iterator[DevTools]:
    """A blank page in a fresh headless Chromium, killed with its process group afterwards."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh (make test does)")
    user_data_dir = tmp_path / "chromium-profile"
    user_data_dir.mkdir()
    log_path = tmp_path / "chromium.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
                                 "about:blank"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port = _devtools_port(user_data_dir, proc)
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(page_url, max_size=None) as websocket:
            yield DevTools(websocket, tmp_path)
    finally:
        _kill_group(proc)
