"""Reads, from the Dagster instance, how the runs a sensor launched ended, day by day.

The review resumes after the last run-status event it saw (an event-log storage id), so each
finished run is folded into the sensor's state exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from churn_platform.constants import RAW_EVENTS, USER_DAILY_ACTIVITY
from churn_platform.sensors.ingest_outcomes import RunOutcome, run_days

SENSOR_NAME_TAG = "dagster/sensor_name"
FINISHED = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
_REASON_CHARS = 300


@dataclass(frozen=True)
class RunReview:
    """Where the review resumes: after this event-log storage id."""

    after_storage_id: int = 0

    def to_json(self) -> int:
        return self.after_storage_id

    @classmethod
    def from_json(cls, raw: int | None) -> RunReview:
        return cls(int(raw or 0))


def review_finished_runs(
    instance: dg.DagsterInstance, sensor_name: str, review: RunReview, limit: int = 200
) -> tuple[list[RunOutcome], RunReview]:
    """Outcomes of the sensor's runs that finished since the last review, oldest first."""
    events = []
    for event_type in FINISHED:
        events += instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=review.after_storage_id or None),
            limit=limit,
            ascending=True,
        ).records
    if not events:
        return [], review
    events.sort(key=lambda record: record.storage_id)
    run_ids = [record.run_id for record in events]
    runs = {
        record.dagster_run.run_id: record.dagster_run
        for record in instance.get_run_records(dg.RunsFilter(run_ids=run_ids, tags={SENSOR_NAME_TAG: sensor_name}))
    }
    outcomes = [_outcome(instance, runs[run_id]) for run_id in dict.fromkeys(run_ids) if run_id in runs]
    return outcomes, RunReview(max(record.storage_id for record in events))


def _outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunOutcome:
    materialized: dict[str, set[str]] = {RAW_EVENTS: set(), USER_DAILY_ACTIVITY: set()}
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        event = record.event_log_entry.dagster_event
        name = event.asset_key.to_user_string()
        if name in materialized and event.partition:
            materialized[name].add(event.partition)
    bad_input: dict[str, str] = {}
    retryable: dict[str, str] = {}
    failure = f"run {run.run_id[:8]} ended {run.status.value}"
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        data = record.event_log_entry.dagster_event.step_failure_data
        if data.error is not None:
            failure = f"{failure}: {data.error.message.strip()[:_REASON_CHARS]}"
        metadata = data.user_failure_data.metadata if data.user_failure_data else {}
        if "bad_input_days" in metadata:
            bad_input.update(metadata["bad_input_days"].value)
        if "retryable_days" in metadata:
            retryable.update(metadata["retryable_days"].value)
    ingests = not run.asset_selection or dg.AssetKey(RAW_EVENTS) in run.asset_selection  # empty: the whole job
    # A failed blocking gate on raw_events stopped the aggregate in the run: its days wait for
    # new files like a bad file, never an aggregate-only run past the gate.
    for gate in _failed_raw_events_gates(instance, run.run_id):
        for day in materialized[RAW_EVENTS] - materialized[USER_DAILY_ACTIVITY]:
            bad_input.setdefault(day, f"blocking check {gate} failed")
        materialized[RAW_EVENTS] -= set(bad_input)
    return RunOutcome(
        run_id=run.run_id,
        days=run_days(dict(run.tags)),
        succeeded=run.status == dg.DagsterRunStatus.SUCCESS,
        ingests=ingests,
        loaded=frozenset(materialized[RAW_EVENTS]),
        aggregated=frozenset(materialized[USER_DAILY_ACTIVITY]),
        bad_input=bad_input,
        retryable=retryable,
        failure=failure,
    )


def _failed_raw_events_gates(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    failed = []
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.asset_key == dg.AssetKey(RAW_EVENTS) and evaluation.blocking and not evaluation.passed:
            failed.append(evaluation.check_name)
    return failed
