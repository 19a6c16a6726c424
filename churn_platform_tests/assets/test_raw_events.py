"""raw_events end to end: loopback S3 server -> Dagster run -> DuckDB warehouse."""

import datetime as dt

import dagster as dg
import duckdb

from churn_platform.definitions import build_definitions
from churn_platform.jobs import INGEST_JOB
from churn_platform_tests.helpers import event_table, put_table

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def _key(day: dt.date, name: str = "part-000.parquet") -> str:
    return f"events/raw/date={day.isoformat()}/{name}"


def run_ingest(settings, first: dt.date, last: dt.date | None = None, instance=None, job_name=None):
    """One run of raw_events (or a job) over [first, last], as a single-run backfill would do."""
    defs = build_definitions(settings)
    if job_name:
        job = defs.resolve_job_def(job_name)
    else:
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey("raw_events")}
        )
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": (last or first).isoformat(),
    }
    return job.execute_in_process(
        tags=tags, instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def partition_status(instance) -> tuple[set[str], set[str]]:
    """(materialized, failed) partitions of raw_events, as the UI's partition bar shows them."""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")
    status = get_and_update_asset_status_cache_value(instance, dg.AssetKey("raw_events"), daily)
    return (set(status.deserialize_materialized_partition_subsets(daily).get_partition_keys()),
            set(status.deserialize_failed_partition_subsets(daily).get_partition_keys()))


def warehouse_counts(settings) -> dict:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return dict(con.execute("SELECT event_date, count(*) FROM raw_events GROUP BY 1").fetchall())


def test_one_day_loads_exact_rows_with_metadata(settings, s3):
    put_table(s3, settings.landing_bucket, _key(D1), event_table(D1, 40))
    put_table(s3, settings.landing_bucket, _key(D1, "late.parquet"), event_table(D1, 10, start_id=40))
    result = run_ingest(settings, D1)
    assert result.success
    assert warehouse_counts(settings) == {D1: 50}
    materialization = result.asset_materializations_for_node("raw_events")[0]
    assert materialization.metadata["rows"].value == 50
    assert materialization.metadata["files"].value == 2
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"raw_events_schema": True, "raw_events_duplicate_rate": True,
                      "raw_events_rejected_rate": True}


def test_range_in_one_run_and_rerun_is_identical(settings, s3):
    for i, day in enumerate((D1, D2, D3)):
        put_table(s3, settings.landing_bucket, _key(day), event_table(day, 10 + i, start_id=100 * i))
    instance = dg.DagsterInstance.ephemeral()
    assert run_ingest(settings, D1, D3, instance).success
    assert warehouse_counts(settings) == {D1: 10, D2: 11, D3: 12}
    assert run_ingest(settings, D1, D3, instance).success
    assert warehouse_counts(settings) == {D1: 10, D2: 11, D3: 12}
    assert len(instance.get_runs()) == 2  # one run per range, not one per day


def test_a_range_loads_in_batches_of_rows_each_day_once(settings, s3, monkeypatch):
    """Days go to the warehouse in batches of about CHURN_INGEST_BATCH_ROWS landed rows (here 15:
    D1+D2, then D3)."""
    from churn_platform.assets import raw_events as raw_events_module

    for i, day in enumerate((D1, D2, D3)):
        put_table(s3, settings.landing_bucket, _key(day), event_table(day, 10 + i, start_id=100 * i))
    real_load_days, batches = raw_events_module.load_days, []

    def recorded(con, batch):
        batches.append([d.day for d in batch])
        return real_load_days(con, batch)

    monkeypatch.setattr(raw_events_module, "load_days", recorded)
    instance = dg.DagsterInstance.ephemeral()
    assert run_ingest(settings.with_overrides(ingest_batch_rows=15), D1, D3, instance).success
    assert batches == [[D1, D2], [D3]]
    assert warehouse_counts(settings) == {D1: 10, D2: 11, D3: 12}
    assert partition_status(instance) == ({"2024-01-01", "2024-01-02", "2024-01-03"}, set())


def test_ingest_job_loads_and_aggregates_days(settings, s3):
    for i, day in enumerate((D1, D2)):
        put_table(s3, settings.landing_bucket, _key(day), event_table(day, 14, start_id=100 * i))
    result = run_ingest(settings, D1, D2, job_name=INGEST_JOB)
    assert result.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        activity = con.execute(
            "SELECT activity_date, count(*), sum(logins) FROM user_daily_activity GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert activity == [(D1, 7, 5), (D2, 7, 5)]  # 7 users a day; 14 rows cycle login/session/payment


def test_duplicate_file_does_not_double_rows(settings, s3):
    table = event_table(D1, 30)
    put_table(s3, settings.landing_bucket, _key(D1), table)
    put_table(s3, settings.landing_bucket, _key(D1, "resent.parquet"), table)
    result = run_ingest(settings, D1)
    assert result.success
    assert warehouse_counts(settings) == {D1: 30}
    metadata = result.asset_materializations_for_node("raw_events")[0].metadata
    assert metadata["duplicates_removed"].value == 30
    duplicate_check = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "raw_events_duplicate_rate"
    )
    assert not duplicate_check.passed  # half the rows were duplicates: the check says so


def test_corrupt_file_fails_its_day_and_keeps_the_others(settings, s3):
    put_table(s3, settings.landing_bucket, _key(D1), event_table(D1, 10))
    put_table(s3, settings.landing_bucket, _key(D2), event_table(D2, 10, start_id=100))
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(D2, "broken.parquet"), Body=b"garbage")
    put_table(s3, settings.landing_bucket, _key(D3), event_table(D3, 10, start_id=200))
    # An earlier good load of D2 must survive the failed reload.
    s3.delete_object(Bucket=settings.landing_bucket, Key=_key(D2, "broken.parquet"))
    assert run_ingest(settings, D2).success
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(D2, "broken.parquet"), Body=b"garbage")

    instance = dg.DagsterInstance.ephemeral()
    result = run_ingest(settings, D1, D3, instance=instance)
    assert not result.success
    failure = result.failure_data_for_node("raw_events")
    assert "events/raw/date=2024-01-02/broken.parquet: unreadable parquet" in failure.error.message
    assert warehouse_counts(settings) == {D1: 10, D2: 10, D3: 10}
    # What the UI shows: the loaded days materialized with their own numbers, only D2 failed.
    assert partition_status(instance) == ({"2024-01-01", "2024-01-03"}, {"2024-01-02"})
    rows = {r.partition_key: r.asset_materialization.metadata["rows"].value
            for r in instance.fetch_materializations(dg.AssetKey("raw_events"), limit=10).records}
    assert rows == {"2024-01-01": 10, "2024-01-03": 10}
    outcome = {k: v.value for k, v in failure.user_failure_data.metadata.items()}
    assert outcome["loaded_days"] == ["2024-01-01", "2024-01-03"]
    assert list(outcome["bad_input_days"]) == ["2024-01-02"] and outcome["retryable_days"] == {}
    attempts = [e for e in result.all_events if e.step_key == "raw_events" and e.is_step_start]
    assert len(attempts) == 1  # bad input is never retried


def test_a_load_error_fails_only_its_day_and_the_step_retry_loads_it(settings, s3, monkeypatch):
    """An error after the read (here DuckDB failing D2's insert during the first attempt) rolls
    back the batch, whose days are then loaded one by one: the error names D2's keys, the other
    days are kept, and it is worth a retry, unlike bad input."""
    import duckdb as duckdb_module

    from churn_platform.assets import raw_events as raw_events_module

    for i, day in enumerate((D1, D2, D3)):
        put_table(s3, settings.landing_bucket, _key(day), event_table(day, 10 + i, start_id=100 * i))
    real_load_days, batches = raw_events_module.load_days, []

    def load_days_failing_d2_in_the_first_attempt(con, batch):
        batches.append([d.day for d in batch])
        if D2 in batches[-1] and len(batches) <= 3:  # the batch, then D2 alone (after D1)
            raise duckdb_module.IOException("simulated disk error")
        return real_load_days(con, batch)

    monkeypatch.setattr(raw_events_module, "load_days", load_days_failing_d2_in_the_first_attempt)
    instance = dg.DagsterInstance.ephemeral()
    result = run_ingest(settings, D1, D3, instance=instance)
    assert result.success  # the step's retry policy loaded D2 on the second attempt
    assert batches[:4] == [[D1, D2, D3], [D1], [D2], [D3]] and batches[4:] == [[D1, D2, D3]]
    assert sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events) == 1
    errors = [e.user_message for e in instance.all_logs(result.run_id) if e.level >= 40]
    assert any(m.startswith("2024-01-02: loading s3://") and "date=2024-01-02/part-000.parquet" in m
               and "IOException: simulated disk error" in m for m in errors), errors
    assert not any(m.startswith(("2024-01-01", "2024-01-03")) for m in errors), errors
    assert warehouse_counts(settings) == {D1: 10, D2: 11, D3: 12}
    assert partition_status(instance) == ({"2024-01-01", "2024-01-02", "2024-01-03"}, set())


def test_missing_column_names_key_and_writes_nothing(settings, s3):
    put_table(s3, settings.landing_bucket, _key(D1), event_table(D1, 10))
    put_table(s3, settings.landing_bucket, _key(D1, "drift.parquet"),
              event_table(D1, 5, start_id=50).drop(["payment_status"]))
    result = run_ingest(settings, D1)
    assert not result.success
    message = result.failure_data_for_node("raw_events").error.message
    assert "drift.parquet: missing required column(s) ['payment_status']" in message
    assert warehouse_counts(settings) == {}


def test_day_without_files_fails_loudly(settings):
    result = run_ingest(settings, D1)
    assert not result.success
    assert "no parquet files under s3://" in result.failure_data_for_node("raw_events").error.message


def test_rejected_rows_are_quarantined_and_gate_fails(settings, s3):
    table = event_table(D1, 20, event_type=["login"] * 15 + ["teleport"] * 5,
                        session_seconds=[None] * 20, payment_status=[None] * 20)
    put_table(s3, settings.landing_bucket, _key(D1), table)
    result = run_ingest(settings, D1)
    assert not result.success  # a blocking check failed: nothing downstream may run
    assert "blocking asset check failed" in result.failure_data_for_node("raw_events").error.message
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["raw_events_rejected_rate"].passed
    assert checks["raw_events_rejected_rate"].metadata["rejected_unknown_event_type"].value == 5
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_events_rejected").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 15


def test_a_day_of_empty_files_fails_and_keeps_its_rows(settings, s3):
    """Replacing a day's only file with a valid 0-row file must not empty the day."""
    put_table(s3, settings.landing_bucket, _key(D1), event_table(D1, 30))
    assert run_ingest(settings, D1).success
    put_table(s3, settings.landing_bucket, _key(D1), event_table(D1, 0))
    result = run_ingest(settings, D1)
    assert not result.success
    message = result.failure_data_for_node("raw_events").error.message
    assert f"{_key(D1)}" in message and "0 rows" in message
    assert warehouse_counts(settings) == {D1: 30}

    # A 0-row file beside a good one is fine.
    put_table(s3, settings.landing_bucket, _key(D1, "more.parquet"), event_table(D1, 12, start_id=500))
    assert run_ingest(settings, D1).success
    assert warehouse_counts(settings) == {D1: 12}
