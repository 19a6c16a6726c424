"""The Dagster UI in headless Chromium (`browser.py`): the global asset lineage page draws the
platform's assets. (The churn_model page's evaluation is checked where a model exists:
test_automation.py.)"""

from __future__ import annotations

import time

import pytest

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
from churn_platform_tests.e2e.browser import DevTools

pytestmark = pytest.mark.e2e

LINEAGE_ROUTE = "/asset-groups"
GROUPS = (INGEST_GROUP, FEATURES_GROUP, MODEL_GROUP)
# user_daily_activity is drawn too, but shortened to "user_dai…_activity" at the fitted zoom.
ASSETS = (RAW_EVENTS, USER_FEATURES, CHURN_LABELS, CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES)
RENDER_TIMEOUT = 60

# The texts of the graph's nodes: Dagster draws each node as HTML inside an SVG <foreignObject>.
GRAPH_NODE_TEXTS = "[...document.querySelectorAll('svg foreignObject')].map(n => n.textContent)"


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
