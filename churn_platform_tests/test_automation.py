"""The automation conditions, evaluated by Dagster against recorded materializations and checks.

Evaluation at a chosen time over an in-memory instance: what each asset would request, tick by
tick (the end-to-end run through `dagster dev` is in e2e/test_automation.py).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from churn_platform.automation import AUTOMATED_WEEKS, AUTOMATION_SENSOR
from churn_platform.constants import (
    CHURN_LABELS,
    CHURN_MODEL,
    CHURN_SCORES,
    PROMOTION_DECISION,
    RAW_EVENTS,
    USER_DAILY_ACTIVITY,
    USER_FEATURES,
)
from churn_platform.definitions import build_definitions

START = dt.date(2024, 1, 1)
WEDNESDAY = dt.datetime(2024, 6, 5, 12, tzinfo=dt.timezone.utc)
K = dt.date(2024, 5, 27)  # the newest complete week on WEDNESDAY: Mon 27 May .. Sun 2 June
SUNDAY = K + dt.timedelta(days=6)
GATES = {
    USER_FEATURES: ("user_features_min_population", "user_features_max_null_rate"),
    CHURN_LABELS: ("churn_labels_min_population", "churn_labels_churn_rate"),
    CHURN_MODEL: ("churn_model_auc_floor",),
}


def _week(offset: int) -> str:
    return (K + dt.timedelta(weeks=offset)).isoformat()


class Graph:
    """An instance with recorded materializations, and the automation daemon's view of it."""

    def __init__(self, settings):
        self.defs = build_definitions(settings.with_overrides(start_date=START))
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None

    def materialize(self, asset: str, partitions, checks_pass: bool = True) -> None:
        """Materializations with their checks: dbt's tests pass; our gates pass or fail."""
        graph = self.defs.resolve_asset_graph()
        checks = graph.get_check_keys_for_assets({dg.AssetKey(asset)})
        for partition in partitions:
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=asset, partition=str(partition)))
            [record] = self.instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)]), limit=1).records
            target = AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
            for check in checks:
                partitioned = graph.get(check).partitions_def is not None
                self.instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=check.asset_key, check_name=check.name, blocking=graph.get(check).blocking,
                    passed=checks_pass or check.name not in GATES.get(asset, ()),
                    partition=str(partition) if partitioned else None, target_materialization_data=target))

    def days(self, first: dt.date, last: dt.date, assets=(RAW_EVENTS, USER_DAILY_ACTIVITY)) -> None:
        span = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        for asset in assets:
            self.materialize(asset, span)

    def tick(self, at: dt.datetime = WEDNESDAY) -> dict[str, list[str]]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor,
                                                   evaluation_time=at)
        self.cursor = result.cursor
        requested = {}
        for asset in (USER_DAILY_ACTIVITY, USER_FEATURES, CHURN_LABELS, CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES):
            partitions = sorted(result.get_requested_partitions(dg.AssetKey(asset)))
            if partitions:
                requested[asset] = partitions
        return requested


@pytest.fixture
def graph(settings) -> Graph:
    return Graph(settings)


def test_the_newest_weeks_lineage_builds_itself_step_by_step(graph):
    assert graph.tick() == {}  # nothing landed: nothing to build, nothing guessed
    graph.days(START, WEDNESDAY.date() - dt.timedelta(days=1))
    weeks = [_week(-i) for i in reversed(range(AUTOMATED_WEEKS))]
    assert graph.tick() == {USER_FEATURES: weeks}  # not labels: their features are requested, not there
    graph.materialize(USER_FEATURES, weeks)
    assert graph.tick() == {CHURN_LABELS: [_week(0)]}  # older labels would need older features
    graph.materialize(CHURN_LABELS, [_week(0)])
    assert graph.tick() == {CHURN_MODEL: [_week(0)]}  # never trained, and the inputs passed their gates
    graph.materialize(CHURN_MODEL, [_week(0)])
    assert graph.tick() == {PROMOTION_DECISION: [_week(0)]}
    graph.materialize(PROMOTION_DECISION, [_week(0)])
    assert graph.tick() == {CHURN_SCORES: [_week(0)]}
    graph.materialize(CHURN_SCORES, [_week(0)])
    assert graph.tick() == {}  # settled: nothing runs twice


def test_a_late_sunday_brings_its_weeks_features_and_labels(graph):
    graph.days(START, SUNDAY - dt.timedelta(days=1))
    older = [_week(-i) for i in reversed(range(1, AUTOMATED_WEEKS))]
    assert graph.tick() == {USER_FEATURES: older}  # week K waits for its Sunday
    graph.materialize(USER_FEATURES, older)
    assert graph.tick() == {}
    graph.days(SUNDAY, SUNDAY)  # the late file is ingested
    assert graph.tick() == {USER_FEATURES: [_week(0)], CHURN_LABELS: [_week(0)]}  # labels[K] need features[K-4]
    graph.materialize(USER_FEATURES, [_week(0)])
    graph.materialize(CHURN_LABELS, [_week(0)])
    assert graph.tick() == {CHURN_MODEL: [_week(0)]}


def test_a_failed_feature_gate_stops_the_labels_and_the_model(graph):
    graph.days(START, WEDNESDAY.date() - dt.timedelta(days=1))
    graph.tick()
    weeks = [_week(-i) for i in reversed(range(AUTOMATED_WEEKS))]
    graph.materialize(USER_FEATURES, weeks[1:])
    graph.materialize(USER_FEATURES, weeks[:1], checks_pass=False)  # K-4: the training week's features
    assert graph.tick() == {}  # labels[K] read the features of K-4: not past its failed gate
    assert graph.tick() == {}


def test_a_model_below_the_auc_floor_is_neither_promoted_nor_used(graph):
    graph.days(START, WEDNESDAY.date() - dt.timedelta(days=1))
    graph.tick()
    graph.materialize(USER_FEATURES, [_week(-i) for i in range(AUTOMATED_WEEKS)])
    graph.materialize(CHURN_LABELS, [_week(0)])
    assert graph.tick() == {CHURN_MODEL: [_week(0)]}
    graph.materialize(CHURN_MODEL, [_week(0)], checks_pass=False)
    assert graph.tick() == {}  # no promotion decision, no scores


def test_the_model_keeps_the_monday_cadence_for_new_weeks(graph):
    graph.days(START, WEDNESDAY.date() - dt.timedelta(days=1))
    graph.tick()
    for asset in (USER_FEATURES, CHURN_LABELS, CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES):
        graph.materialize(asset, [_week(0)] if asset != USER_FEATURES else [_week(-i) for i in range(AUTOMATED_WEEKS)])
    assert graph.tick() == {}
    # The next week ends: its data is in by Monday 00:30, its features and labels build...
    next_sunday = SUNDAY + dt.timedelta(weeks=1)
    graph.days(WEDNESDAY.date(), next_sunday)
    monday_0030 = dt.datetime.combine(next_sunday + dt.timedelta(days=1), dt.time(0, 30), dt.timezone.utc)
    assert graph.tick(monday_0030) == {USER_FEATURES: [_week(1)], CHURN_LABELS: [_week(1)]}
    graph.materialize(USER_FEATURES, [_week(1)])
    graph.materialize(CHURN_LABELS, [_week(1)])
    assert graph.tick(monday_0030) == {}  # ...but the model waits for 01:00 UTC
    assert graph.tick(monday_0030 + dt.timedelta(minutes=35)) == {CHURN_MODEL: [_week(1)]}


def test_the_automation_sensor_runs_by_default(settings):
    sensor = build_definitions(settings).resolve_sensor_def(AUTOMATION_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
