"""Faults on the Spark engine: `kill -9` of a run mid-overwrite, then two runs at once.

Plain parquet tables have no transactions: a day's partition is replaced when Spark commits
the job, by moving the files it staged under `.spark-staging-*`. A run killed before that
leaves every day as it was; the next ingest deletes the dead job's staging folders. The embedded
Derby catalog must open again after its process was killed, and the warehouse lock, held by
the dead run, must be free. Two ingests at once take turns on the lock and leave each day once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from churn_platform.constants import RAW_EVENTS
from churn_platform.events import landing_key
from churn_platform.resources import build_warehouse
from churn_platform.settings import SparkSettings
from churn_platform_tests.helpers import RunWorker, event_table, execute_assets, instance_at, put_table, worker_env

DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(3)]
FIRST, LATE = 3000, 1000  # rows per day in the first file, and in the file that lands late
RANGE = (DAYS[0].isoformat(), DAYS[-1].isoformat())


def _snapshot(settings) -> dict:
    """{day: sorted event ids} of raw_events and {day: (files, rows)} of the ledger, read by a new
    Spark session (so the catalog must open)."""
    with build_warehouse(settings).connect(read_only=True) as con:
        events = con.execute("SELECT CAST(event_date AS STRING), event_id FROM raw_events").fetchall()
        ledger = con.execute("SELECT CAST(event_date AS STRING), files, rows FROM ingested_days").fetchall()
    by_day: dict[str, list[str]] = {}
    for day, event_id in events:
        by_day.setdefault(day, []).append(event_id)
    return {"events": {day: sorted(ids) for day, ids in by_day.items()},
            "ledger": {day: (files, rows) for day, files, rows in ledger}}


def _staging_dirs(settings) -> list[Path]:
    return sorted((settings.spark_dir / "warehouse").glob("churn.db/*/.spark-staging-*"))


@pytest.fixture
def spark_settings(settings):
    return settings.with_overrides(engine="spark", spark=SparkSettings(quick_jvm=True))  # short JVMs start sooner


def test_killed_spark_ingest_leaves_each_day_whole_and_two_runs_at_once_load_it_once(spark_settings, s3):
    settings = spark_settings
    bucket = settings.landing_bucket
    for i, day in enumerate(DAYS):
        put_table(s3, bucket, landing_key(day, "part-000.parquet"), event_table(day, FIRST, start_id=i * 10**6))
    with instance_at(settings.dagster_home) as instance:
        assert execute_assets(settings, [RAW_EVENTS], instance, partition_range=RANGE).success
    before = _snapshot(settings)
    assert {day: len(ids) for day, ids in before["events"].items()} == {d.isoformat(): FIRST for d in DAYS}

    # A late file per day; the re-ingest is killed while Spark writes the new partitions.
    for i, day in enumerate(DAYS):
        put_table(s3, bucket, landing_key(day, "part-001.parquet"), event_table(day, LATE, start_id=i * 10**6 + FIRST))
    env = worker_env(settings, CHURN_ENGINE="spark", CHURN_SPARK_QUICK_JVM="1")
    worker = RunWorker(env, [RAW_EVENTS], partition_range=RANGE)
    worker.wait_until(lambda: _staging_dirs(settings), "Spark writing raw_events' new partitions", timeout=240)
    worker.kill()
    killed_staging = _staging_dirs(settings)
    assert killed_staging, "the kill should land while the job's files are staged"

    after_kill = _snapshot(settings)
    complete = {d.isoformat(): FIRST + LATE for d in DAYS}
    for day, ids in after_kill["events"].items():  # each day as before, or wholly replaced
        assert ids == before["events"][day] or (len(ids) == complete[day] and set(before["events"][day]) <= set(ids)), day
    assert after_kill["ledger"] == before["ledger"] or all(n == complete[d] for d, (_, n) in after_kill["ledger"].items())

    # Two ingests at once (the range, and its middle day alone): they take turns on the lock.
    runs = [RunWorker(env, [RAW_EVENTS], partition_range=RANGE),
            RunWorker(env, [RAW_EVENTS], partition=DAYS[1].isoformat())]
    assert [run.wait(timeout=300) for run in runs] == [0, 0], [run.output[-3000:] for run in runs]

    final = _snapshot(settings)
    expected = {
        d.isoformat(): sorted(f"e{i * 10**6 + n}" for n in range(FIRST + LATE)) for i, d in enumerate(DAYS)
    }
    assert final["events"] == expected  # every row once: nothing lost, nothing doubled
    assert final["ledger"] == {day: (2, FIRST + LATE) for day in expected}
    assert not any(path.exists() for path in killed_staging), "the dead job's staged files were left behind"
    assert any("never committed" in run.output for run in runs), "the cleanup is logged in the run"
