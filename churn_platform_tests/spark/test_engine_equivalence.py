"""The same landed data through both engines gives the same tables (issue: Spark engine).

One module-scoped scenario, run on DuckDB and on a real local Spark: a day ingested alone,
then corrected and given a late file; every day ingested in one run, with duplicates across
files and rejected rows; one day's aggregate rebuilt alone; features for K-4..K and labels for K in range runs; a model trained
and promoted on DuckDB, then the same champion version scoring on both engines; and a model
trained from the Spark tables. Every table is compared row by row (floats within 1e-9).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.dev.generator import part_key
from churn_platform.dev.landing import land_demo_events
from churn_platform.dev.s3 import s3_client
from churn_platform.events import landing_key
from churn_platform.jobs import INGEST_JOB
from churn_platform.resources import build_warehouse
from churn_platform.settings import Settings
from churn_platform_tests.helpers import DEMO_END, K, K_MINUS_4, demo_env, event_table, put_table

USERS = 1500
DAYS = 119  # the fewest days whose weeks K-4..K have whole feature and label windows (91-day lineage)
LATE_DAY = dt.date(2024, 5, 1)
BAD_DAY = dt.date(2024, 4, 10)
DUPLICATED_DAY = dt.date(2024, 3, 5)
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")

# Table: the columns that identify a row (the comparison sorts by them).
KEYS = {
    "raw_events": ["event_date", "event_id"],
    "raw_events_rejected": ["event_date", "source_key", "event_id", "reason"],
    "ingested_days": ["event_date"],
    "user_daily_activity": ["activity_date", "user_id"],
    "user_features": ["as_of_date", "user_id"],
    "churn_labels": ["as_of_date", "user_id"],
    "churn_scores": ["as_of_date", "user_id"],
}


def _bad_rows(day: dt.date, start_id: int, **overrides):
    """One valid login and five rows the rules reject, each for its own reason."""
    return event_table(day, 6, start_id=start_id, **{
        "event_type": ["login", "bogus", "login", "session", "payment", "login"],
        "user_id": [1, 2, None, 3, 4, 5],
        "event_ts": [dt.datetime.combine(day, dt.time(9), dt.timezone.utc)] * 5
        + [dt.datetime.combine(day + dt.timedelta(days=1), dt.time(1), dt.timezone.utc)],
        "session_seconds": [None, None, None, -5.0, None, None],
        "payment_status": [None] * 6,
        **overrides,
    })


def _run(settings: Settings, instance, job, *, partition=None, first=None, last=None):
    tags = {RANGE[0]: first, RANGE[1]: last} if first else {}
    result = job.execute_in_process(instance=instance, partition_key=partition, tags=tags, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _jobs(settings: Settings):
    defs = build_definitions(settings)
    assets = defs.resolve_implicit_global_asset_job_def()
    return defs.resolve_job_def(INGEST_JOB), lambda *names: assets.get_subset(
        asset_selection={dg.AssetKey(n) for n in names})


def _metadata(result, asset: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset)
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def engines(tmp_path_factory, s3_endpoint):
    """Run the scenario on both engines; returns {engine: (settings, {step: metadata})}."""
    root = tmp_path_factory.mktemp("engines")
    bucket = "engines-landing"
    mlflow_uri = f"sqlite:///{root}/mlflow.db"  # shared: both engines score the same version
    settings = {
        engine: Settings.from_env(demo_env(
            root / engine, s3_endpoint, bucket, CHURN_ENGINE=engine, CHURN_GATE_MIN_TRAINING_ROWS="100",
            CHURN_SPARK_QUICK_JVM="1",  # its many short JVMs start sooner
            CHURN_START_DATE=(DEMO_END - dt.timedelta(days=DAYS - 1)).isoformat()))
        .with_overrides(mlflow_tracking_uri=mlflow_uri)
        for engine in ("duckdb", "spark")
    }
    s3 = s3_client(s3_endpoint)
    land_demo_events(settings["duckdb"], USERS, DAYS, DEMO_END, 7)
    copied = s3.get_object(Bucket=bucket, Key=part_key(DUPLICATED_DAY))["Body"].read()
    s3.put_object(Bucket=bucket, Key=landing_key(DUPLICATED_DAY, "resent.parquet"), Body=copied)
    put_table(s3, bucket, landing_key(BAD_DAY, "bad.parquet"), _bad_rows(BAD_DAY, 10**7))
    put_table(s3, bucket, landing_key(LATE_DAY, "bad.parquet"), _bad_rows(LATE_DAY, 2 * 10**7))

    instances = {engine: dg.DagsterInstance.ephemeral() for engine in settings}
    jobs = {engine: _jobs(s) for engine, s in settings.items()}
    seen = {engine: {} for engine in settings}
    for engine, (_, assets) in jobs.items():  # LATE_DAY alone, before its late files land
        _run(settings[engine], instances[engine], assets("raw_events"), partition=LATE_DAY.isoformat())
    # The bad file of LATE_DAY is re-landed corrected (no rejected rows left) and a late file lands.
    put_table(s3, bucket, landing_key(LATE_DAY, "bad.parquet"), _bad_rows(LATE_DAY, 2 * 10**7, user_id=[1] * 6,
              event_type=["login"] * 6, event_ts=[dt.datetime.combine(LATE_DAY, dt.time(9), dt.timezone.utc)] * 6,
              session_seconds=[None] * 6))
    put_table(s3, bucket, landing_key(LATE_DAY, "late.parquet"), event_table(LATE_DAY, 9, start_id=3 * 10**7))
    first_day = settings["duckdb"].start_date.isoformat()
    for engine, (ingest, assets) in jobs.items():
        s, instance = settings[engine], instances[engine]
        seen[engine]["ingest"] = _metadata(
            _run(s, instance, ingest, first=first_day, last=DEMO_END.isoformat()), "raw_events")
        # A rerun of one day's aggregate replaces exactly that day (Spark: insert_overwrite).
        _run(s, instance, assets("user_daily_activity"), partition=LATE_DAY.isoformat())
        _run(s, instance, assets("user_features"), first=K_MINUS_4, last=K)
        _run(s, instance, assets("churn_labels"), partition=K)
    # DuckDB trains and promotes v1; both engines score with it.
    trained = _run(settings["duckdb"], instances["duckdb"], jobs["duckdb"][1]("churn_model", "promotion_decision"),
                   partition=K)
    seen["duckdb"]["model"] = _metadata(trained, "churn_model")
    for engine, (_, assets) in jobs.items():
        seen[engine]["scores"] = _metadata(
            _run(settings[engine], instances[engine], assets("churn_scores"), partition=K), "churn_scores")
    # Spark trains from its own tables, into its own MLflow store: the same training set, the same model.
    own_store = settings["spark"].with_overrides(mlflow_tracking_uri=f"sqlite:///{root}/spark/mlflow.db")
    seen["spark"]["model"] = _metadata(
        _run(own_store, instances["spark"], _jobs(own_store)[1]("churn_model"), partition=K), "churn_model")
    tables = {engine: _tables(s) for engine, s in settings.items()}
    return seen, tables


def _tables(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every compared table, sorted by its keys, with engine-neutral column order and types."""
    frames = {}
    with build_warehouse(settings).connect(read_only=True) as con:
        for table, keys in KEYS.items():
            frame = con.execute(f"SELECT * FROM {table}").df()
            frame = frame[sorted(frame.columns)].sort_values(keys, ignore_index=True)
            frames[table] = frame
    return frames


def _normalized(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if column.endswith("_date") or column == "activity_date":
            frame[column] = pd.to_datetime(values).dt.date
        elif pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
            frame[column] = values.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(values):
            frame[column] = pd.to_datetime(values).dt.tz_localize(None).astype("datetime64[us]")
    return frame


@pytest.mark.parametrize("table", [t for t in KEYS if t != "ingested_days"])
def test_tables_are_identical_row_by_row(engines, table):
    _, tables = engines
    duck, spark = (_normalized(tables[e][table]) for e in ("duckdb", "spark"))
    assert len(duck) > 0
    pd.testing.assert_frame_equal(duck, spark, check_exact=False, rtol=0, atol=1e-9, check_dtype=False)


def test_ingest_ledger_and_counts_agree(engines):
    seen, tables = engines
    ledger = {e: _normalized(tables[e]["ingested_days"])[["event_date", "files", "rows"]] for e in tables}
    pd.testing.assert_frame_equal(ledger["duckdb"], ledger["spark"], check_dtype=False)
    duck, spark = seen["duckdb"]["ingest"], seen["spark"]["ingest"]
    for name in ("rows", "files", "days", "duplicates_removed", "rejected_rows"):
        assert duck[name] == spark[name], name
    assert duck["duplicates_removed"] > 0 and duck["rejected_rows"] >= 5
    assert {k: v for k, v in duck.items() if k.startswith("rejected_")} == {
        k: v for k, v in spark.items() if k.startswith("rejected_")}


def test_a_corrected_day_loses_its_old_rejected_rows_on_both(engines):
    _, tables = engines
    for engine in tables:
        rejected = _normalized(tables[engine]["raw_events_rejected"])
        assert set(rejected["event_date"]) == {BAD_DAY}, engine
        late = _normalized(tables[engine]["raw_events"])
        assert (late["event_date"] == LATE_DAY).sum() > 9 + 6, engine  # generated + late + corrected rows


def test_the_same_version_scores_the_same_and_spark_trains_the_same_model(engines):
    seen, _ = engines
    assert seen["duckdb"]["scores"]["model_version"] == seen["spark"]["scores"]["model_version"] == "1"
    duck, spark = seen["duckdb"]["model"], seen["spark"]["model"]
    metrics = [k for k, v in duck.items() if isinstance(v, float) and "seconds" not in k]
    assert "roc_auc" in metrics and duck["training_as_of"] == spark["training_as_of"]
    for name in metrics:
        assert duck[name] == pytest.approx(spark[name], abs=1e-12), name
