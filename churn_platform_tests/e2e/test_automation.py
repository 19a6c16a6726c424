"""Declarative automation through a real `dagster dev`: no launches, only landed files.

The history ends with the newest complete week K, whose Sunday is withheld. The landing sensor
ingests the rest; automation builds the features of K-4..K-1 by itself and waits for K. A bad
Sunday file fails its ingest gate: automation builds nothing past it. The corrected file then
brings the whole lineage of K (features, labels, model, promotion, scores) without a click.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from churn_platform.automation import AUTOMATION_SENSOR
from churn_platform.constants import (
    CHURN_LABELS,
    CHURN_MODEL,
    CHURN_SCORES,
    PROMOTION_DECISION,
    RAW_EVENTS,
    USER_DAILY_ACTIVITY,
    USER_FEATURES,
)
from churn_platform.sensors.s3_landing import LANDING_SENSOR
from churn_platform.windows import newest_complete_monday
from churn_platform_tests.dagster_ui import SENSOR_QUERY, describe_runs, run_tags, wait_for
from churn_platform_tests.e2e.conftest import running_dagster_dev
from churn_platform_tests.helpers import event_table, put_table

pytestmark = pytest.mark.e2e
AUTOMATION_CONDITION_TAG = "dagster/from_automation_condition"

USERS = 2500
K = newest_complete_monday(dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
SUNDAY = K + dt.timedelta(days=6)
FIRST_DAY = K - dt.timedelta(weeks=16)  # the first weekly partition is then K-4
BUILD_TIMEOUT = 420

EVALUATIONS_QUERY = """
query($key: AssetKeyInput!) {
  assetConditionEvaluationRecordsOrError(assetKey: $key, limit: 50) {
    __typename
    ... on AssetConditionEvaluationRecords { records { evaluationId numRequested runIds } }
  }
}
"""


def _week(offset: int) -> str:
    return (K + dt.timedelta(weeks=offset)).isoformat()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_dagster_dev(
        tmp_path_factory.mktemp("automation"), USERS, (SUNDAY - FIRST_DAY).days + 1, SUNDAY, withhold=SUNDAY,
        CHURN_GATE_MIN_TRAINING_ROWS="200", CHURN_GATE_MIN_AUC="0.55", CHURN_AUTOMATION_INTERVAL_SECONDS="5",
    ) as running:
        yield running


def _materialized(stack, asset: str, partitions: list[str]) -> bool:
    return all(stack.partition_status(asset, p) == "MATERIALIZED" for p in partitions)


def _automation_ticks_since(stack, since: float) -> int:
    selector = {**stack.repository_selector(), "sensorName": AUTOMATION_SENSOR}
    state = stack.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]
    return sum(1 for tick in state["ticks"] if tick["timestamp"] > since)


def test_the_newest_week_builds_itself_once_its_sunday_lands_and_passes_its_gates(stack):
    older = [_week(-i) for i in (4, 3, 2, 1)]
    wait_for("the features of K-4..K-1, by automation", lambda: _materialized(stack, USER_FEATURES, older),
             BUILD_TIMEOUT, interval=5, explain=lambda: describe_runs(stack.runs()))
    assert stack.partition_status(USER_FEATURES, _week(0)) is None  # K waits for its Sunday
    assert stack.partition_status(CHURN_LABELS, _week(0)) is None

    # A bad Sunday file: its rejected rows fail the ingest gate, and automation stops there.
    [(key, body)] = stack.withheld.items()
    bucket = stack.settings.landing_bucket
    bad = event_table(SUNDAY, 40, start_id=900_000, event_type=["login"] * 30 + ["bogus"] * 10)
    put_table(stack.s3, bucket, key, bad)
    [failed] = wait_for("the failed ingest of the bad Sunday", lambda: stack.runs(
        tags={"dagster/partition": SUNDAY.isoformat()}, statuses=["FAILURE"]), BUILD_TIMEOUT)
    assert stack.partition_status(RAW_EVENTS, SUNDAY.isoformat()) in ("MATERIALIZED", "FAILED")
    since = time.time()
    wait_for("two automation ticks after it", lambda: _automation_ticks_since(stack, since) >= 2, 60)
    assert stack.partition_status(USER_DAILY_ACTIVITY, SUNDAY.isoformat()) != "MATERIALIZED"
    assert stack.partition_status(USER_FEATURES, _week(0)) is None

    # The corrected file: the whole lineage of K follows without a launch.
    stack.s3.put_object(Bucket=bucket, Key=key, Body=body)
    wait_for("churn_scores of K, by automation", lambda: _materialized(stack, CHURN_SCORES, [_week(0)]),
             BUILD_TIMEOUT, interval=5, explain=lambda: describe_runs(stack.runs()))
    for asset in (USER_FEATURES, CHURN_LABELS, CHURN_MODEL, PROMOTION_DECISION):
        assert stack.partition_status(asset, _week(0)) == "MATERIALIZED", asset
    failures = [r for r in stack.runs(statuses=["FAILURE"]) if r["runId"] != failed["runId"]]
    assert failures == [], failures
    # Nobody launched them: every run not from the landing sensor came from automation, and the
    # UI keeps the evaluation behind each request.
    automated = [run_tags(r) for r in stack.runs() if run_tags(r).get("dagster/sensor_name") != LANDING_SENSOR]
    assert automated and all(t.get(AUTOMATION_CONDITION_TAG) == "true" for t in automated), automated
    records = stack.graphql(EVALUATIONS_QUERY, key={"path": [CHURN_MODEL]})["assetConditionEvaluationRecordsOrError"]
    assert records["__typename"] == "AssetConditionEvaluationRecords", records
    requested = [r for r in records["records"] if r["numRequested"]]
    assert len(requested) == 1 and requested[0]["runIds"], records  # trained once


# Clicks the "[Show Markdown]" link of the `evaluation` metadata row; false until the row is drawn.
SHOW_EVALUATION = """(() => {
  const row = [...document.querySelectorAll('tr')].find(r => r.cells.length && r.cells[0].innerText.trim() === 'evaluation');
  const link = row && [...row.querySelectorAll('a')].find(a => a.textContent.includes('Show Markdown'));
  if (!link) return false;
  link.click();
  return true;
})()"""
# The images in the open markdown dialog, as [source prefix, decoded width]: 0 until decoded.
DIALOG_IMAGES = "[...document.querySelectorAll('[role=dialog] img')].map(i => [i.src.slice(0, 22), i.naturalWidth])"


def _decoded_images(page) -> list | None:
    images = page.evaluate(DIALOG_IMAGES)
    return images if len(images) == 4 and all(width > 0 for _, width in images) else None


def test_the_model_page_shows_its_evaluation(stack, page):
    """The churn_model page of K as a user opens it: the evaluation's four plots render (decoded
    images) above its tables of lift, precision at the top, tiers, importance and calibration."""
    assert stack.partition_status(CHURN_MODEL, _week(0)) == "MATERIALIZED"  # trained by automation above
    url = f"{stack.url}/assets/{CHURN_MODEL}?partition={_week(0)}"
    page.call("Page.navigate", url=url)
    wait_for("the evaluation row's Show Markdown link", lambda: page.evaluate(SHOW_EVALUATION), 60,
             explain=lambda: f"screenshot of {url}: {page.screenshot()}")
    images = wait_for("four decoded plots in the dialog", lambda: _decoded_images(page), 30,
                      explain=lambda: f"screenshot of {url}: {page.screenshot()}")
    assert all(source == "data:image/png;base64," for source, _ in images)
    text = page.evaluate("document.querySelector('[role=dialog]').innerText")
    for needle in ("top-decile lift", "churners reached", "plan tier", "AUC lost when shuffled", "observed churn rate"):
        assert needle in text, needle
    print(f"screenshot of the evaluation: {page.screenshot()}")
