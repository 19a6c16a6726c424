"""The job side of Pipes: where a job's session settings and message channel come from."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager


@contextmanager
def job_context():
    """Pipes context and a Spark session for a job, however it was launched: a local
    subprocess passes CHURN_SPARK_CONF and reads messages from a file; EMR Serverless sets
    CHURN_PIPES_MESSAGES=s3 and the cluster's own settings apply."""
    from dagster_pipes import PipesS3MessageWriter, open_dagster_pipes

    from churn_platform.spark.conf import session

    writer = None
    if os.environ.get("CHURN_PIPES_MESSAGES") == "s3":
        import boto3

        writer = PipesS3MessageWriter(client=boto3.client("s3"))
    with open_dagster_pipes(**({"message_writer": writer} if writer else {})) as pipes:
        spark = session(json.loads(os.environ.get("CHURN_SPARK_CONF") or "{}"))
        try:
            yield pipes, spark
        finally:
            spark.stop()
