"""Concurrent runs on an instance without pool settings queue on the warehouse, never fail on it.

Each run is its own process, as the run launcher starts them (threads of one process share
DuckDB's file lock and would never clash), and all four are released at the same moment.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager

import dagster as dg
import pytest

from churn_platform.ml.mlflow_io import connect
from churn_platform.settings import PROJECT_ROOT
from churn_platform_tests.helpers import DEMO_END, K, demo_env, materialize, query

MIN_AUC = 0.6  # the small demo history trains to ~0.7: the default floor would refuse it
DAY = DEMO_END.isoformat()  # in week K, whose as-of date it also is
RUNS = {
    "ingest": (DAY, ["raw_events", "user_daily_activity"]),
    "features": (K, ["user_features"]),
    "training": (K, ["churn_model"]),
    "scores": (K, ["churn_scores"]),
}


@pytest.fixture
def demo(demo_settings, training_inputs):
    """A private copy of the demo warehouse with week K's inputs built, and the AUC floor the
    demo can pass."""
    shutil.copy(training_inputs, demo_settings.warehouse_path)
    return demo_settings.with_overrides(
        gate_thresholds=dataclasses.replace(demo_settings.gate_thresholds, min_auc=MIN_AUC)
    )


def _unpooled_instance(dagster_home) -> str:
    """A Dagster home whose instance configures no pool at all (its storage is created here,
    once: four processes creating it together race on its migrations)."""
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()
    return str(dagster_home)


@contextmanager
def _workers(settings, dagster_home: str, log_dir):
    """The four runs' processes, importing while the test prepares; killed if it ends early."""
    env = {
        **os.environ,
        **demo_env(settings.data_dir, settings.s3_endpoint_url, settings.landing_bucket,
                   MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri, CHURN_GATE_MIN_AUC=str(MIN_AUC)),
        "DAGSTER_HOME": dagster_home,
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    workers = {}
    try:
        for name, (partition, assets) in RUNS.items():
            with (log_dir / f"{name}.log").open("w") as log:
                workers[name] = subprocess.Popen(
                    [sys.executable, "-m", "churn_platform_tests.run_worker", partition, *assets],
                    cwd=PROJECT_ROOT, env=env, text=True,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                )
        yield workers
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
            worker.wait()


def _release_together(workers: dict, log_dir) -> dict[str, str]:
    """Start the four runs at once; their failures (stdout) by name."""
    for name, worker in workers.items():
        assert worker.stdout.readline().strip() == "ready", (log_dir / f"{name}.log").read_text()[-3000:]
    for worker in workers.values():
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return {name: worker.communicate(timeout=600)[0] for name, worker in workers.items()}


def _day_and_week(settings) -> dict[str, list]:
    return {
        "raw_events": query(settings, "SELECT count(*) FROM raw_events WHERE event_date = ?", [DAY]),
        "user_daily_activity": query(settings, "SELECT count(*), count(DISTINCT user_id) FROM "
                                     "user_daily_activity WHERE activity_date = ?", [DAY]),
        "user_features": query(settings, "SELECT count(*), count(DISTINCT user_id) FROM user_features "
                               "WHERE as_of_date = ?", [DAY]),
    }


def test_ingest_features_training_and_scores_at_once(demo, tmp_path):
    settings = demo
    dagster_home = _unpooled_instance(tmp_path / "dagster_home")
    with _workers(settings, dagster_home, tmp_path) as workers:
        # A champion, built alone (the inputs of week K come built with the warehouse).
        assert materialize(settings, ["churn_model", "promotion_decision"], K).success
        before = _day_and_week(settings)
        ingested_at = query(settings, "SELECT ingested_at FROM ingested_days WHERE event_date = ?", [DAY])

        failures = _release_together(workers, tmp_path)
        codes = {name: worker.returncode for name, worker in workers.items()}
    assert codes == dict.fromkeys(RUNS, 0), failures

    assert _day_and_week(settings) == before  # the day and the week rebuilt, to the same rows
    assert query(settings, "SELECT ingested_at FROM ingested_days WHERE event_date = ?", [DAY]) > ingested_at
    population = before["user_features"][0][0]
    assert query(settings, "SELECT count(*), count(DISTINCT user_id) FROM churn_scores WHERE as_of_date = ?",
                 [DAY]) == [(population, population)]
    versions = connect(settings.mlflow_tracking_uri).search_model_versions("name='churn_prediction'")
    assert len(versions) == 2  # the champion and the concurrent run's challenger
