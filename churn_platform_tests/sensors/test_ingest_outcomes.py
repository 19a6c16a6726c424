"""Follow-ups of finished ingest runs: retry with backoff, wait for new files, aggregate loaded days."""

from churn_platform.sensors.ingest_outcomes import (
    AGGREGATE,
    INGEST,
    Pending,
    RetryLimits,
    RunOutcome,
    plan_followups,
    run_days,
)

LIMITS = RetryLimits(max_attempts=2, base_delay_seconds=10)


def _outcome(days, loaded=(), aggregated=(), bad_input=None, retryable=None, ingests=True,
             succeeded=False) -> RunOutcome:
    return RunOutcome(run_id="r", days=tuple(days), succeeded=succeeded, ingests=ingests, loaded=frozenset(loaded),
                      aggregated=frozenset(aggregated), bad_input=bad_input or {}, retryable=retryable or {},
                      failure="run r ended FAILURE")


def test_run_days_from_partition_and_range_tags():
    assert run_days({"dagster/partition": "2024-01-02"}) == ("2024-01-02",)
    assert run_days({"dagster/asset_partition_range_start": "2024-01-30",
                     "dagster/asset_partition_range_end": "2024-02-01"}) == ("2024-01-30", "2024-01-31", "2024-02-01")


def test_a_partial_range_aggregates_its_loaded_days_and_waits_on_bad_input():
    outcome = _outcome(["d1", "d2", "d3"], loaded=["d1", "d3"], bad_input={"d2": "s3://b/k: unreadable"})
    followups = plan_followups([outcome], Pending(), now=100.0, limits=LIMITS)
    assert followups.aggregate_days == ["d1", "d3"] and followups.ingest_days == []
    assert followups.pending.waiting == {"d2": "s3://b/k: unreadable"}
    assert "d2: waiting for new or changed files (s3://b/k: unreadable)" in followups.report(100.0)
    assert followups.pending.forget(["d2"]).waiting == {}  # new files supersede the wait


def test_a_transient_failure_is_retried_with_backoff_then_given_up():
    failed = _outcome(["d1"], retryable={"d1": "lock timeout"})
    first = plan_followups([failed], Pending(), now=0.0, limits=LIMITS)
    assert first.ingest_days == [] and first.pending.retries["d1"].not_before == 10.0
    assert "d1: ingest retry 1 in 10 s (lock timeout)" in first.report(0.0)
    assert plan_followups([], first.pending, now=9.0, limits=LIMITS).ingest_days == []
    due = plan_followups([], first.pending, now=10.0, limits=LIMITS)
    assert due.ingest_days == [("d1", 1)]
    assert plan_followups([], due.pending, now=99.0, limits=LIMITS).ingest_days == []  # in flight

    second = plan_followups([failed], due.pending, now=20.0, limits=LIMITS)
    assert second.pending.retries["d1"].not_before == 40.0  # twice the delay
    again = plan_followups([], second.pending, now=40.0, limits=LIMITS)
    assert again.ingest_days == [("d1", 2)]
    exhausted = plan_followups([failed], again.pending, now=50.0, limits=LIMITS)
    assert "d1" not in exhausted.pending.retries and exhausted.pending.gave_up == {"d1": "lock timeout"}
    assert "d1: gave up after the last retry" in exhausted.report(50.0)


def test_a_killed_run_retries_every_day_it_did_not_load_with_its_own_error():
    killed = _outcome(["d1", "d2"], loaded=["d1"], aggregated=["d1"])
    followups = plan_followups([killed], Pending(), now=0.0, limits=LIMITS)
    assert set(followups.pending.retries) == {"d2"}
    assert followups.pending.retries["d2"].reason == "run r ended FAILURE"


def test_a_failed_aggregate_only_run_is_retried_as_an_aggregate():
    failed = _outcome(["d1"], ingests=False)
    followups = plan_followups([failed], Pending(), now=0.0, limits=LIMITS)
    assert followups.pending.retries["d1"].kind == AGGREGATE
    due = plan_followups([], followups.pending, now=10.0, limits=LIMITS)
    assert due.aggregate_days == ["d1"] and due.ingest_days == []


def test_success_clears_what_was_pending():
    pending = plan_followups([_outcome(["d1"], retryable={"d1": "x"})], Pending(), 0.0, LIMITS).pending
    assert pending.retries["d1"].kind == INGEST
    done = plan_followups([_outcome(["d1"], loaded=["d1"], aggregated=["d1"], succeeded=True)], pending, 50.0, LIMITS)
    assert done.pending == Pending()
    assert Pending.from_json(pending.to_json()) == pending
