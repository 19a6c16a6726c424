"""The production topology as data: each service's command and environment.

`make stack` runs exactly these commands with exactly these variables on loopback, and a test
holds `deploy/compose.yaml` to the same commands and variable names, so what runs here is what
a deployment runs. Only addresses and secrets differ between the two, and they come from the
environment in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from churn_platform.settings import PROJECT_ROOT

DEPLOY_DIR = PROJECT_ROOT / "deploy"
INSTANCE_CONFIG = DEPLOY_DIR / "dagster.yaml"  # the production instance: every address from the env
WORKSPACE = DEPLOY_DIR / "workspace.yaml"  # one code location, served by the code server over gRPC
CODE_LOCATION_MODULE = "churn_platform.definitions"
CODE_LOCATION_NAME = "churn_platform"

MLFLOW_ARTIFACT_BUCKET = "churn-mlflow-artifacts"
COMPUTE_LOG_BUCKET = "churn-dagster-compute-logs"
POSTGRES_USER = "churn"
DAGSTER_DB = "dagster"
MLFLOW_DB = "mlflow"
MLFLOW_WORKERS = 2  # the tracking server's worker processes: two keep it answering during an upload

SERVICES = ("postgres", "mlflow", "code_server", "webserver", "daemon")


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the stack; the UI, S3 and MLflow ones are `make dev`'s, so links carry over."""

    ui: int = 3000
    s3: int = 9000
    mlflow: int = 5000
    postgres: int = 5433  # not 5432: a system PostgreSQL may be listening there
    code_server: int = 4000


@dataclass(frozen=True)
class Layout:
    """Every file of the stack under one folder, apart from `make dev`'s (`.data/stack` by default)."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"  # CHURN_DATA_DIR: the DuckDB warehouse, the seed's start date

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def s3_mirror(self) -> Path:
        return self.root / "s3"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def dagster_command(service: str, host: str, port: int | None = None) -> list[str]:
    """The argv of a Dagster service, as the image's entry points run it."""
    if service == "code_server":
        return ["dagster", "code-server", "start", "-m", CODE_LOCATION_MODULE,
                "--location-name", CODE_LOCATION_NAME, "-h", host, "-p", str(port)]
    if service == "webserver":
        return ["dagster-webserver", "-h", host, "-p", str(port), "-w", str(WORKSPACE.name)]
    if service == "daemon":
        return ["dagster-daemon", "run", "-w", str(WORKSPACE.name)]
    raise ValueError(f"not a Dagster service: {service!r}")


def mlflow_command(host: str, port: int) -> list[str]:
    """The tracking server; its store and artifact destination come from MLFLOW_* variables."""
    return ["mlflow", "server", "--host", host, "--port", str(port), "--workers", str(MLFLOW_WORKERS)]


# The variables each service reads. Values are set by `make stack` (dev/production_stack.py) and by
# the deployment (deploy/compose.yaml, deploy/helm/values.yaml); names are the contract.
DAGSTER_INSTANCE_VARS = (
    "DAGSTER_HOME",
    "DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PORT", "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_DB",
    "DAGSTER_CODE_SERVER_HOST", "DAGSTER_CODE_SERVER_PORT",
    "DAGSTER_COMPUTE_LOG_BUCKET",
)
PLATFORM_VARS = (
    "CHURN_ENV", "CHURN_DATA_DIR", "CHURN_LANDING_BUCKET", "CHURN_START_DATE",
    "CHURN_DAGSTER_UI_URL", "CHURN_MLFLOW_UI_URL", "CHURN_LANDING_SENSOR_INTERVAL_SECONDS",
    "CHURN_LANDING_QUEUE_URL", "CHURN_LANDING_SWEEP_INTERVAL_SECONDS", "MLFLOW_TRACKING_URI",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION",
    # Where churn_scores is published for the CRM; empty means the landing bucket and `scores/`.
    "CHURN_SCORES_BUCKET", "CHURN_SCORES_PREFIX",
    # The promotion report's retention-campaign economics; empty means contact_economics.py's placeholders.
    "CHURN_CONTACT_COST", "CHURN_SAVED_CUSTOMER_VALUE", "CHURN_SAVE_RATE",
)
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
# MLFLOW_SERVER_ALLOWED_HOSTS: MLflow ≥3.5 answers 403 to a Host header that is not loopback or a
# private IP (DNS-rebinding guard; /health is exempt), so clients that reach the server by a
# name (compose's `mlflow`, a Kubernetes service) need that name listed.
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: MLflow 3's server otherwise starts six job-runner
# processes (~1.7 GB together) for features the platform does not use.
MLFLOW_SERVER_VARS = ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_SERVER_ALLOWED_HOSTS",
                      "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
# Only where S3 and SQS are not AWS itself (the loopback server here); a deployment on AWS leaves them unset.
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "MLFLOW_S3_ENDPOINT_URL")
OFFLINE_VARS = ("DAGSTER_DISABLE_TELEMETRY", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK",
                "DBT_SEND_ANONYMOUS_USAGE_STATS")


def service_variables(service: str) -> tuple[str, ...]:
    """The names a service is given (besides PATH); compose must give the same ones."""
    if service == "postgres":
        return ()
    if service == "mlflow":
        return (*MLFLOW_SERVER_VARS, *AWS_VARS, "MLFLOW_S3_ENDPOINT_URL", *OFFLINE_VARS)
    if service in ("code_server", "webserver", "daemon"):
        # One environment for the three: run workers are launched by the code server, the daemon
        # evaluates sensors through it, and all three open the same instance.
        return (*DAGSTER_INSTANCE_VARS, *PLATFORM_VARS, *AWS_VARS, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS",
                *OFFLINE_VARS)
    raise ValueError(f"unknown service {service!r}")
