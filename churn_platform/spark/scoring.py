"""The orchestrator's side of Spark scoring: hand the verified champion to the scoring job."""

from __future__ import annotations

import datetime as dt
import io

import skops.io

from churn_platform.ingest.staging import StagingArea
from churn_platform.resources.spark_jobs import SparkJobs
from churn_platform.resources.spark_warehouse import SparkWarehouse


def score_on_spark(context, warehouse: SparkWarehouse, spark_jobs: SparkJobs,
                   model, model_version: str, as_of: dt.date) -> dict:
    """Run churn_platform/spark/score_job.py for one as-of date; returns its counts."""
    staging = StagingArea(warehouse.staging_root(), context.run_id)
    buffer = io.BytesIO()
    skops.io.dump(model, buffer)
    try:
        model_uri = staging.put("model.skops", buffer.getvalue())
        messages = spark_jobs.run(context, "score_job", {
            "as_of_date": as_of.isoformat(), "model_version": model_version, "model_uri": model_uri,
        }, warehouse)
    finally:
        staging.clear()
    return messages[-1]
