"""Retry policies for steps that talk to S3 or MLflow: exponential backoff with jitter."""

import dagster as dg

EXTERNAL_SERVICE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
