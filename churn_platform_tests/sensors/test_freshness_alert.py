"""The freshness alert: one notice when churn_model or churn_scores turns stale, one when fresh again.

The freshness states are written as Dagster's freshness daemon writes them (a runless
FreshnessStateChange); the real daemon is driven in e2e/test_dagster_dev.py.
"""

import time

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from churn_platform.constants import CHURN_MODEL, CHURN_SCORES
from churn_platform.definitions import build_definitions
from churn_platform.freshness import WATCHED_ASSETS
from churn_platform.resources.notify import Notifier
from churn_platform.sensors.freshness_alert import FRESHNESS_SENSOR, needs_notice
from churn_platform_tests.helpers import report_materialization_at

DAY = 86400
SENT: list[str] = []


class RecordingNotifier(Notifier):
    def send(self, text, log=None):
        SENT.append(text)
        return False


def _set_state(instance, asset: str, previous: FreshnessState, state: FreshnessState) -> None:
    instance._report_runless_asset_event(FreshnessStateChange(  # noqa: SLF001 - as the daemon does
        key=dg.AssetKey(asset), previous_state=previous, new_state=state, state_change_timestamp=time.time()))


def _tick(sensor, instance, cursor):
    SENT.clear()
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"notifier": RecordingNotifier()}) as context:
        result = sensor(context)
        return context.cursor, result, list(SENT)


def test_policies_are_on_the_weekly_outputs_and_the_alert_runs_by_default(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    for asset in WATCHED_ASSETS:
        policy = graph.get(dg.AssetKey(asset)).freshness_policy
        assert (policy.warn_window.to_timedelta().days, policy.fail_window.to_timedelta().days) == (8, 15)
    assert defs.resolve_sensor_def(FRESHNESS_SENSOR).default_status == dg.DefaultSensorStatus.RUNNING


def test_one_notice_per_change_with_the_age_and_partition(settings):
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_definitions(settings).resolve_sensor_def(FRESHNESS_SENSOR)
    now = time.time()
    report_materialization_at(instance, CHURN_SCORES, "2024-04-15", now - 9 * DAY)
    report_materialization_at(instance, CHURN_MODEL, "2024-04-08", now - 16 * DAY)
    _set_state(instance, CHURN_SCORES, FreshnessState.UNKNOWN, FreshnessState.WARN)
    _set_state(instance, CHURN_MODEL, FreshnessState.UNKNOWN, FreshnessState.FAIL)

    cursor, result, sent = _tick(sensor, instance, None)
    assert len(sent) == 2, sent
    scores = next(text for text in sent if text.startswith(":hourglass: churn_scores is stale (WARN"))
    assert "last materialized 9.0 days ago (partition 2024-04-15)" in scores
    assert scores.endswith("/assets/churn_scores")
    model = next(text for text in sent if "churn_model failed its freshness policy (FAIL" in text)
    assert "16.0 days ago (partition 2024-04-08)" in model
    assert "notified:" in result.skip_message

    cursor, result, sent = _tick(sensor, instance, cursor)  # nothing changed: nothing sent again
    assert sent == [] and "no freshness change" in result.skip_message

    report_materialization_at(instance, CHURN_SCORES, "2024-04-22", time.time())
    _set_state(instance, CHURN_SCORES, FreshnessState.WARN, FreshnessState.PASS)
    cursor, _, sent = _tick(sensor, instance, cursor)
    assert len(sent) == 1 and sent[0].startswith(":white_check_mark: churn_scores is fresh again (was WARN)")
    assert "0.0 days ago (partition 2024-04-22)" in sent[0]


def test_which_changes_are_worth_a_notice():
    assert needs_notice("UNKNOWN", "WARN") and needs_notice("WARN", "FAIL") and needs_notice("FAIL", "PASS")
    assert not needs_notice("UNKNOWN", "PASS")  # a first materialization is not news
    assert not needs_notice("WARN", "WARN") and not needs_notice("PASS", "UNKNOWN")
