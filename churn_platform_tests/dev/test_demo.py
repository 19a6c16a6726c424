"""`churn-platform demo` end to end with real parts: its own moto server, DuckDB, dbt, MLflow.

126 days ending Sunday 2024-05-26 is the shortest history the demo accepts for that end
date: the first weekly partition starts 84 days after the first day and must be K-5. Ingest
cost grows with days, so the test (two full demo runs) takes ~110 s on two busy cores.
"""

import datetime as dt
import uuid

import dagster as dg
import duckdb
import pytest

from churn_platform.dev.demo import DemoError, newest_trainable_week, run_demo
from churn_platform.jobs import INGEST_JOB
from churn_platform.ml.mlflow_io import connect, version_number
from churn_platform.ml.promotion import get_champion
from churn_platform.settings import Settings

END = dt.date(2024, 5, 26)
DAYS = 126
USERS = 4000
K_MINUS_1, K = "2024-05-13", "2024-05-20"
TABLES = ("raw_events", "user_features", "churn_labels", "churn_scores")


def test_newest_trainable_week_needs_six_weekly_partitions():
    assert newest_trainable_week(dt.date(2024, 1, 22), END) == dt.date(2024, 5, 20)
    assert newest_trainable_week(dt.date(2024, 1, 22), END + dt.timedelta(days=6)) == dt.date(2024, 5, 20)
    with pytest.raises(DemoError, match="too short"):
        newest_trainable_week(dt.date(2024, 1, 23), END)


def row_counts(settings: Settings) -> dict[str, int]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def decisions(instance: dg.DagsterInstance) -> list[str]:
    records = instance.fetch_materializations(dg.AssetKey("promotion_decision"), limit=100).records
    return sorted(r.partition_key for r in records)


def test_demo_trains_twice_scores_with_the_champion_and_reruns_idempotently(tmp_path, monkeypatch):
    env = {
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CHURN_GATE_MIN_TRAINING_ROWS": "1000",
        # moto's state is per process: other tests' buckets live in the same backend.
        "CHURN_LANDING_BUCKET": f"demo-{uuid.uuid4().hex[:8]}",
    }
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # the demo sets it; restored afterwards
    first = run_demo(USERS, DAYS, END, 42, env=env, echo=lambda _: None)
    settings = Settings.from_env(env)

    assert first.seeded_events and first.landed_files == DAYS
    assert first.start_date == dt.date(2024, 1, 22) and first.end_date == END
    assert [week.partition_key for week in first.weeks] == [K_MINUS_1, K]
    client = connect(settings.mlflow_tracking_uri)
    assert len(client.search_model_versions("name='churn_prediction'")) == 2
    champion = version_number(get_champion(client))
    assert champion == first.champion_version
    assert first.weeks[0].decision["promoted"] is True  # the first model has no champion to beat
    assert first.weeks[1].decision["previous_champion"] == first.weeks[0].model["model_version"]

    with dg.DagsterInstance.get() as instance:
        assert decisions(instance) == [K_MINUS_1, K]
        ingest = instance.get_runs(dg.RunsFilter(job_name=INGEST_JOB))
        assert [run.tags["dagster/asset_partition_range_end"] for run in ingest] == [END.isoformat()]

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        scores = con.execute("SELECT count(*), min(model_version), max(model_version) "
                             "FROM churn_scores WHERE as_of_date = ?", [END]).fetchone()
        population = con.execute("SELECT count(*) FROM user_features WHERE as_of_date = ?",
                                 [END]).fetchone()[0]
    assert scores == (population, champion, champion) and population > 0
    report = first.report()  # the retention team's numbers beside AUC
    assert f"top-decile lift {first.weeks[1].model['top_decile_lift']:.2f}" in report
    assert f"drift against the champion's population: {first.scores['drift']}" in report
    assert "/_manifest.json" in first.scores["published_manifest"]
    counts = row_counts(settings)

    again = run_demo(USERS, DAYS, END, 42, env=env, echo=lambda _: None)
    assert again.seeded_events is None and again.landed_files == DAYS
    assert row_counts(settings) == counts
    assert len(client.search_model_versions("name='churn_prediction'")) == 4
    with dg.DagsterInstance.get() as instance:
        assert decisions(instance) == [K_MINUS_1, K_MINUS_1, K, K]
