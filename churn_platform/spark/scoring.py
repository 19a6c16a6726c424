"""The orchestrator's side of Spark scoring: hand the verified champion to the scoring job."""

from __future__ import annotations

import datetime as dt
import sys
import tempfile

import dagster as dg
import skops.io

from churn_platform.resources.spark_warehouse import SparkWarehouse


def score_on_spark(context, warehouse: SparkWarehouse, spark_jobs: dg.PipesSubprocessClient,
                   model, model_version: str, as_of: dt.date) -> dict:
    """Run churn_platform/spark/score_job.py for one as-of date; returns its counts."""
    with tempfile.TemporaryDirectory(prefix="churn-score-", dir=warehouse.staging_dir()) as staging:
        model_path = f"{staging}/model.skops"
        skops.io.dump(model, model_path)
        with warehouse.lock(exclusive=True):
            messages = spark_jobs.run(
                command=[sys.executable, "-m", "churn_platform.spark.score_job"],
                context=context,
                extras={"as_of_date": as_of.isoformat(), "model_version": model_version, "model_path": model_path},
                env=warehouse.job_environment(),
                cwd=warehouse.spark_dir,
            ).get_custom_messages()
    return messages[-1]
