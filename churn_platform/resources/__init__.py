"""Every resource the platform uses, built from one Settings object (local and prod alike)."""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_slack import SlackResource

from churn_platform.resources.dbt import DBT_EXECUTABLE, DBT_PROJECT, OfflineDbtCliResource
from churn_platform.resources.landing import LandingZone
from churn_platform.resources.landing_queue import LandingQueue
from churn_platform.resources.mlflow_registry import MlflowRegistry
from churn_platform.resources.notify import Notifier
from churn_platform.resources.score_publisher import ScorePublisher
from churn_platform.redaction import has_credentials
from churn_platform.resources.spark_jobs import EmrServerlessSparkJobs, SparkJobs
from churn_platform.resources.spark_warehouse import SparkWarehouse
from churn_platform.resources.warehouse import DuckDBWarehouse, Warehouse
from churn_platform.settings import LOCAL_S3_CREDENTIAL, Settings
from churn_platform.spark.conf import spark_conf


def _secret_safe(value: str | None, env_var: str):
    """A URL with credentials reaches the resource as an EnvVar: the UI then shows the
    variable's name, never its value. (Such a URL can only have come from that variable.)"""
    return dg.EnvVar(env_var) if has_credentials(value) else value


def build_s3(settings: Settings) -> S3Resource:
    """Real S3 in production (credentials from the environment); the loopback server locally."""
    if settings.local_s3_credentials:
        return S3Resource(
            endpoint_url=_secret_safe(settings.s3_endpoint_url, "AWS_ENDPOINT_URL_S3"),
            region_name="us-east-1",
            aws_access_key_id=LOCAL_S3_CREDENTIAL,
            aws_secret_access_key=LOCAL_S3_CREDENTIAL,
        )
    return S3Resource(endpoint_url=_secret_safe(settings.s3_endpoint_url, "AWS_ENDPOINT_URL_S3"))


def build_landing_queue(settings: Settings) -> LandingQueue:
    """The SQS queue of event mode; locally on the loopback server, with its throwaway credentials."""
    endpoint = _secret_safe(settings.queue_endpoint_url, "AWS_ENDPOINT_URL_SQS")
    if settings.local_s3_credentials:
        return LandingQueue(queue_url=settings.landing_queue_url, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=LOCAL_S3_CREDENTIAL, aws_secret_access_key=LOCAL_S3_CREDENTIAL)
    return LandingQueue(queue_url=settings.landing_queue_url, endpoint_url=endpoint,
                        region_name=queue_region(settings.landing_queue_url))


def queue_region(queue_url: str) -> str | None:
    """The region in an AWS queue URL (https://sqs.<region>.amazonaws.com/...); None elsewhere,
    where boto3's own configuration (AWS_REGION) applies."""
    host = queue_url.split("/")[2] if "//" in queue_url else ""
    parts = host.split(".")
    return parts[1] if len(parts) >= 4 and parts[0] == "sqs" and host.endswith(".amazonaws.com") else None


def build_notifier(settings: Settings) -> Notifier:
    """Slack only when both the bot token (a secret, from the environment) and a channel are set."""
    if settings.slack_token_set and settings.slack_channel:
        return Notifier(slack=SlackResource(token=dg.EnvVar("SLACK_BOT_TOKEN")), channel=settings.slack_channel)
    return Notifier()


def build_mlflow_registry(settings: Settings) -> MlflowRegistry:
    """The tracking store and registry of this environment; also what the CLI and demo use."""
    return MlflowRegistry(
        tracking_uri=_secret_safe(settings.mlflow_tracking_uri, "MLFLOW_TRACKING_URI"),
        artifact_root=str(settings.mlflow_artifact_root),
        ui_url=settings.mlflow_ui_url,
    )


def build_warehouse(settings: Settings) -> Warehouse:
    """The engine's warehouse (CHURN_ENGINE): a DuckDB file, or tables in a Spark catalog."""
    if settings.engine == "spark":
        return SparkWarehouse(spark_dir=str(settings.spark_dir), staging_uri=settings.spark.staging_uri,
                              conf=spark_conf(settings.spark_dir, settings.spark.conf_file, settings.spark.quick_jvm))
    return DuckDBWarehouse(path=str(settings.warehouse_path), ingest_batch_rows=settings.ingest_batch_rows)


def build_spark_jobs(settings: Settings) -> SparkJobs:
    """How the Spark engine's PySpark jobs are launched: a subprocess here, EMR Serverless in production."""
    if settings.spark.jobs == "emr-serverless":
        emr = settings.spark.emr
        return EmrServerlessSparkJobs(
            application_id=emr["CHURN_EMR_APPLICATION_ID"], execution_role_arn=emr["CHURN_EMR_EXECUTION_ROLE_ARN"],
            code_uri=emr["CHURN_SPARK_CODE_URI"], pipes_bucket=emr["CHURN_PIPES_BUCKET"],
        )
    return SparkJobs()


def build_resources(settings: Settings) -> dict:
    s3 = build_s3(settings)
    warehouse = build_warehouse(settings)
    optional = {"spark_jobs": build_spark_jobs(settings)} if settings.engine == "spark" else {}
    if settings.landing_queue_url:
        optional["landing_queue"] = build_landing_queue(settings)
    return {
        **optional,
        "s3": s3,
        "landing": LandingZone(s3=s3, bucket=settings.landing_bucket),
        "score_publisher": ScorePublisher(s3=s3, bucket=settings.scores_bucket, prefix=settings.scores_prefix),
        "warehouse": warehouse,
        "notifier": build_notifier(settings),
        "mlflow": build_mlflow_registry(settings),
        "dbt": OfflineDbtCliResource(
            project_dir=DBT_PROJECT,
            dbt_executable=DBT_EXECUTABLE,
            target=settings.dbt_target,
            data_dir=str(settings.data_dir),
            warehouse=warehouse,
            # DuckDB closes the warehouse when dbt's last connection closes; a local Spark
            # session would stay in the run's process and hold the catalog.
            in_process=settings.engine == "duckdb",
        ),
    }
