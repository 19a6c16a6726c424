"""The one place that decides the environment (docs/contract.md §6).

`Settings.from_env()` reads the environment once, when definitions load (never at
import). Local defaults keep all state inside the checkout; production sets the
same variable names and nothing else changes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from churn_platform.constants import DEFAULT_INGEST_BATCH_ROWS, DEFAULT_LANDING_BUCKET, DEFAULT_SCORES_PREFIX
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.contact_economics import ContactEconomics

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DEFAULT_DATA_DIR = PROJECT_ROOT / ".data"
DEFAULT_DEMO_DAYS = 150
START_DATE_FILE = "start_date"  # written by `churn-platform seed` into CHURN_DATA_DIR
ENVIRONMENTS = ("local", "prod")
DEFAULT_LOCAL_S3_PORT = 9000
ENGINES = ("duckdb", "spark")  # CHURN_ENGINE: the warehouse engine (docs/contract.md §6)
LOCAL_S3_CREDENTIAL = "local"  # the loopback S3 server accepts any key; never used in prod


SPARK_JOB_LAUNCHERS = ("local", "emr-serverless")
_EMR_VARS = ("CHURN_EMR_APPLICATION_ID", "CHURN_EMR_EXECUTION_ROLE_ARN", "CHURN_SPARK_CODE_URI", "CHURN_PIPES_BUCKET")


@dataclass(frozen=True)
class SparkSettings:
    """How the Spark engine reaches its cluster (README, "The Spark engine"); local when unset."""

    conf_file: str | None = None  # the cluster's settings (spark-defaults format) over the local ones
    staging_uri: str | None = None  # where jobs read handed-over files (an s3:// prefix on a cluster)
    jobs: str = "local"  # how PySpark jobs are launched: a subprocess, or EMR Serverless through Pipes
    emr: dict[str, str] = field(default_factory=dict)  # _EMR_VARS, when jobs == "emr-serverless"
    quick_jvm: bool = False  # CHURN_SPARK_QUICK_JVM: local JVMs compile with C1 only (spark/conf.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SparkSettings:
        jobs = env.get("CHURN_SPARK_JOBS") or "local"
        if jobs not in SPARK_JOB_LAUNCHERS:
            raise ValueError(f"CHURN_SPARK_JOBS={jobs!r}: expected one of {SPARK_JOB_LAUNCHERS}")
        emr = {name: env.get(name, "") for name in _EMR_VARS} if jobs == "emr-serverless" else {}
        missing = [name for name, value in emr.items() if not value]
        if missing:
            raise ValueError(f"CHURN_SPARK_JOBS=emr-serverless needs {', '.join(missing)}")
        staging = env.get("CHURN_SPARK_STAGING_URI") or None
        if jobs == "emr-serverless" and not (staging or "").startswith("s3://"):
            raise ValueError("CHURN_SPARK_JOBS=emr-serverless needs CHURN_SPARK_STAGING_URI=s3://... "
                             "(the cluster cannot read this host's disk)")
        quick = env.get("CHURN_SPARK_QUICK_JVM", "0")
        if quick not in ("0", "1"):
            raise ValueError(f"CHURN_SPARK_QUICK_JVM={quick!r}: expected 0 or 1")
        return cls(conf_file=env.get("CHURN_SPARK_CONF_FILE") or None, staging_uri=staging, jobs=jobs, emr=emr,
                   quick_jvm=quick == "1")


@dataclass(frozen=True)
class Settings:
    """Everything environment-specific, resolved once."""

    environment: str
    data_dir: Path
    dagster_home: Path
    landing_bucket: str
    scores_bucket: str  # where the CRM reads churn scores (docs/contract.md §3); the landing bucket by default
    scores_prefix: str  # the folder of the score partitions in that bucket
    s3_endpoint_url: str | None = field(repr=False)  # may carry credentials
    mlflow_tracking_uri: str = field(repr=False)
    start_date: dt.date
    dbt_target: str  # a target of dbt_project/profiles.yml; by default the engine's local one
    slack_channel: str | None
    slack_token_set: bool  # the token itself is read from SLACK_BOT_TOKEN by the resource
    ui_url: str
    mlflow_ui_url: str | None
    local_s3_credentials: bool
    gate_thresholds: GateThresholds = GateThresholds()
    contact_economics: ContactEconomics = ContactEconomics()
    landing_sensor_interval_seconds: int = 30
    landing_queue_url: str | None = None  # event mode: the SQS queue of the bucket's notifications
    sqs_endpoint_url: str | None = None  # AWS_ENDPOINT_URL_SQS; locally the S3 server serves SQS too
    landing_sweep_interval_seconds: int = 600  # event mode: how often the listing sweep starts
    automation_interval_seconds: int = 30  # between evaluations of the assets' automation conditions
    freshness_alert_interval_seconds: int = 60  # between reads of the freshness states to alert on
    ingest_batch_rows: int = DEFAULT_INGEST_BATCH_ROWS  # DuckDB: landed rows per ingest transaction
    engine: str = "duckdb"
    spark: SparkSettings = SparkSettings()

    @property
    def spark_dir(self) -> Path:
        """The local Spark engine's tables, metastore and staging area."""
        return self.data_dir / "spark"

    @property
    def queue_endpoint_url(self) -> str | None:
        """Where SQS is reached: AWS itself in production, the loopback S3 server (moto) locally."""
        if self.sqs_endpoint_url or self.environment != "local":
            return self.sqs_endpoint_url
        return self.s3_endpoint_url

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def mlflow_artifact_root(self) -> str:
        """A tracking server stores artifacts where it is configured to (proxied: `mlflow-artifacts:`);
        a local store keeps them beside the warehouse."""
        if self.mlflow_tracking_uri.startswith(("http://", "https://")):
            return "mlflow-artifacts:/"
        return str(self.data_dir / "mlflow-artifacts")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        environment = env.get("CHURN_ENV", "local")
        if environment not in ENVIRONMENTS:
            raise ValueError(f"CHURN_ENV={environment!r}: expected one of {ENVIRONMENTS}")
        data_dir = Path(env.get("CHURN_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
        engine = env.get("CHURN_ENGINE") or "duckdb"
        if engine not in ENGINES:
            raise ValueError(f"CHURN_ENGINE={engine!r}: expected one of {ENGINES}")
        landing_bucket = env.get("CHURN_LANDING_BUCKET") or DEFAULT_LANDING_BUCKET
        return cls(
            environment=environment,
            data_dir=data_dir,
            dagster_home=Path(env.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve(),
            landing_bucket=landing_bucket,
            scores_bucket=env.get("CHURN_SCORES_BUCKET") or landing_bucket,
            scores_prefix=env.get("CHURN_SCORES_PREFIX") or DEFAULT_SCORES_PREFIX,
            s3_endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or _default_s3_endpoint(environment, env),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir}/mlflow.db",
            start_date=_resolve_start_date(env, data_dir),
            dbt_target=env.get("CHURN_DBT_TARGET") or engine,
            slack_channel=env.get("CHURN_SLACK_CHANNEL") or None,
            slack_token_set=bool(env.get("SLACK_BOT_TOKEN")),
            ui_url=env.get("CHURN_DAGSTER_UI_URL") or "http://127.0.0.1:3000",
            mlflow_ui_url=env.get("CHURN_MLFLOW_UI_URL")
            or ("http://127.0.0.1:5000" if environment == "local" else None),
            local_s3_credentials=environment == "local" and not env.get("AWS_ACCESS_KEY_ID"),
            gate_thresholds=GateThresholds.from_env(env),
            contact_economics=ContactEconomics.from_env(env),
            landing_sensor_interval_seconds=_positive_int(env, "CHURN_LANDING_SENSOR_INTERVAL_SECONDS", 30),
            landing_queue_url=env.get("CHURN_LANDING_QUEUE_URL") or None,
            sqs_endpoint_url=env.get("AWS_ENDPOINT_URL_SQS") or None,
            landing_sweep_interval_seconds=_positive_int(env, "CHURN_LANDING_SWEEP_INTERVAL_SECONDS", 600),
            automation_interval_seconds=_positive_int(env, "CHURN_AUTOMATION_INTERVAL_SECONDS", 30),
            ingest_batch_rows=_positive_int(env, "CHURN_INGEST_BATCH_ROWS", DEFAULT_INGEST_BATCH_ROWS),
            freshness_alert_interval_seconds=_positive_int(env, "CHURN_FRESHNESS_ALERT_INTERVAL_SECONDS", 60),
            engine=engine,
            spark=SparkSettings.from_env(env),
        )

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r}: expected a positive whole number of seconds")
    return value


def _default_s3_endpoint(environment: str, env: Mapping[str, str]) -> str | None:
    """Locally, the loopback S3 server that `make dev` starts; in production, AWS itself."""
    if environment != "local":
        return None
    return f"http://127.0.0.1:{env.get('CHURN_LOCAL_S3_PORT') or DEFAULT_LOCAL_S3_PORT}"


def _resolve_start_date(env: Mapping[str, str], data_dir: Path) -> dt.date:
    """CHURN_START_DATE, else the first day the demo seeder wrote, else the default demo window."""
    raw = env.get("CHURN_START_DATE")
    if not raw:
        marker = data_dir / START_DATE_FILE
        raw = marker.read_text().strip() if marker.exists() else None
    if raw:
        try:
            return dt.date.fromisoformat(raw)
        except ValueError as err:
            raise ValueError(f"CHURN_START_DATE={raw!r} is not a YYYY-MM-DD date") from err
    return default_demo_end_date() - dt.timedelta(days=DEFAULT_DEMO_DAYS - 1)


def default_demo_end_date() -> dt.date:
    """Demo data ends yesterday (UTC), the newest complete day."""
    return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
