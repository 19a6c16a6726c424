"""The Dagster UI in headless Chromium: the global asset lineage page draws the platform's assets.

Chromium is Debian's (/usr/bin/chromium); `scripts/ensure_chromium.sh` installs it and `make test`
runs that script first. The page is driven over the Chrome DevTools Protocol.
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
from pathlib import Path

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from churn_platform.constants import (
    CHURN_LABELS,
    CHURN_MODEL,
    CHURN_SCORES,
    FEATURES_GROUP,
    INGEST_GROUP,
    MODEL_GROUP,
    PROMOTION_DECISION,
    RAW_EVENTS,
    USER_FEATURES,
)

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# The flags of the machine's own Chromium check: without the background-networking ones,
# Chromium's calls home are refused by the closed network, many at a time.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1600,1000", "--remote-debugging-port=0",
]
LINEAGE_ROUTE = "/asset-groups"
GROUPS = (INGEST_GROUP, FEATURES_GROUP, MODEL_GROUP)
# user_daily_activity is drawn too, but shortened to "user_dai…_activity" at the fitted zoom.
ASSETS = (RAW_EVENTS, USER_FEATURES, CHURN_LABELS, CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES)
ALT = 1  # the Alt bit of a DevTools input event's modifiers
STARTUP_TIMEOUT = 30
RENDER_TIMEOUT = 60

# The texts of the graph's nodes: Dagster draws each node as HTML inside an SVG <foreignObject>.
GRAPH_NODE_TEXTS = "[...document.querySelectorAll('svg foreignObject')].map(n => n.textContent)"


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


@pytest.fixture
def page(tmp_path) -> Iterator[DevTools]:
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


def _wait_for_nodes(page: DevTools, names: tuple[str, ...], url: str) -> None:
    """Poll until the graph has a node naming each of `names`; fail with a screenshot if not."""
    deadline = time.monotonic() + RENDER_TIMEOUT
    while True:
        node_texts = page.evaluate(GRAPH_NODE_TEXTS)
        missing = [name for name in names if not any(name in text for text in node_texts)]
        if not missing:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"after {RENDER_TIMEOUT} s the graph at {url} has no node for {missing} "
                        f"(nodes: {node_texts}); screenshot: {page.screenshot()}\n"
                        f"page text: {page.evaluate('document.body.innerText')[:2000]}")
        time.sleep(1)


def test_asset_lineage_page_renders_the_assets(dagster_dev, page):
    """The global lineage page draws the asset groups and, expanded, a node for each asset."""
    url = dagster_dev.url + LINEAGE_ROUTE
    page.call("Page.navigate", url=url)
    _wait_for_nodes(page, GROUPS, url)  # the global graph starts with its groups collapsed
    page.press_alt("KeyE")  # the graph's "Expand all groups" shortcut
    _wait_for_nodes(page, ASSETS, url)
    print(f"screenshot of {url}: {page.screenshot()}")
