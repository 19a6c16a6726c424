"""Declarative automation: what materializes by itself, and when (README, "Automation").

The landing sensor launches ingest runs; from there the graph keeps itself current:
- user_daily_activity[day] is rebuilt after a load of raw_events[day] that did not build it too
  (the ingest job builds both; this catches a load alone, e.g. from the UI);
- user_features[K] and churn_labels[K] are built once every input partition exists and passed
  its blocking checks, and rebuilt when an input changes: a late Sunday file brings its week;
- churn_model, promotion_decision and churn_scores follow the Monday 01:00 UTC cadence for the
  newest complete week: the model trains once that week's inputs are ready, at the earliest on
  the Monday tick, or right away after a fresh install; promotion and scores follow the model.

Inputs count as ready only once materialized (not merely requested in the same tick): assets of
different partitions run in different runs, which would race.

Automation looks back AUTOMATED_WEEKS weeks (the newest week's whole lineage: its model trains
on the features of week K-4); older history is a backfill an operator launches.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

AC = dg.AutomationCondition

TRAINING_CRON = "0 1 * * 1"  # Monday 01:00 UTC: the week that ended at midnight has landed
AUTOMATION_SENSOR = "churn_automation"
AUTOMATED_WEEKS = 5  # weeks K-4..K
AUTOMATED_DAYS = 7 * (AUTOMATED_WEEKS + 12)  # the daily inputs of those weeks' features (13 weeks each)


def _inputs_ready() -> dg.AutomationCondition:
    return (
        ~AC.any_deps_match(AC.missing()).with_label("any_deps_missing")
        & ~AC.any_deps_in_progress()
        & AC.all_deps_blocking_checks_passed()
        & ~AC.in_progress()
    )


def _recent(span: dt.timedelta) -> dg.AutomationCondition:
    return AC.in_latest_time_window(span)


def daily_activity() -> dg.AutomationCondition:
    """user_daily_activity: again after raw_events[day] loads without it."""
    changed = AC.any_deps_updated().since_last_handled().with_label("raw_events loaded since")
    return _recent(dt.timedelta(days=AUTOMATED_DAYS)) & changed & _inputs_ready()


def weekly_table() -> dg.AutomationCondition:
    """user_features, churn_labels: as soon as their input windows are complete; again when they change."""
    # Not since_last_handled(): its reset on the first evaluation would leave a week that is
    # already buildable then (an upgrade, a restored instance) unbuilt until an input changes.
    wanted = (AC.newly_missing() | AC.any_deps_updated()).since(
        AC.newly_requested() | AC.newly_updated()).with_label("missing or inputs changed")
    return _recent(dt.timedelta(weeks=AUTOMATED_WEEKS)) & wanted & _inputs_ready()


def weekly_model() -> dg.AutomationCondition:
    """churn_model: the newest complete week, once, from its Monday 01:00 UTC tick (or a fresh start)."""
    due = (AC.cron_tick_passed(TRAINING_CRON, "UTC") | AC.initial_evaluation()).since(
        AC.newly_requested() | AC.newly_updated()).with_label("due since Monday 01:00 UTC")
    return AC.in_latest_time_window() & AC.missing() & due & _inputs_ready()


def after_upstream() -> dg.AutomationCondition:
    """promotion_decision, churn_scores: after their upstream of the newest week materialized."""
    changed = AC.any_deps_updated().since_last_handled().with_label("upstream updated since")
    return AC.in_latest_time_window() & changed & _inputs_ready()


def build_automation_sensor(interval_seconds: int = 30) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description="Evaluates the assets' automation conditions: why each partition was or was not requested.",
    )
