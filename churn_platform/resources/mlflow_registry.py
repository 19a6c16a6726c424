"""MLflow tracking and registry, as a configurable resource.

Why not dagster-mlflow: its `mlflow_tracking` is a legacy function resource that starts a
fluent MLflow run when the resource initializes, sets process-global tracking URIs, and
ends the run in a hook that does not fire on every failure path. We need one run per
training that is always closed (FAILED on error), an explicit client per call, and no
global state, which `churn_platform.ml.registry` provides.
"""

import dagster as dg


class MlflowRegistry(dg.ConfigurableResource):
    """Where models are tracked and registered; local sqlite store or a remote server."""

    tracking_uri: str
    artifact_root: str
    ui_url: str | None = None  # link for the Dagster UI; defaults to an http(s) tracking URI
    retry_attempts: int = 4
    retry_base_delay_seconds: float = 0.5

    def client(self):
        from churn_platform.ml.registry import connect

        return connect(self.tracking_uri)

    def retry(self):
        from churn_platform.ml.registry import RetryPolicy

        return RetryPolicy(attempts=self.retry_attempts, base_delay_seconds=self.retry_base_delay_seconds)
