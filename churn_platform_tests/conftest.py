"""Shared fixtures: a real S3 server on loopback, a temporary warehouse, offline settings."""

import datetime as dt
import itertools
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_platform.local_stack import ensure_bucket, local_s3_server, s3_client
from churn_platform.settings import Settings
from churn_platform.telemetry import OFFLINE_ENV

os.environ.update(OFFLINE_ENV)

_bucket_ids = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 HTTP server on a free loopback port, shared by the session."""
    with local_s3_server(port=0) as endpoint:
        yield endpoint


@pytest.fixture
def settings(tmp_path, s3_endpoint) -> Settings:
    """Settings for one test: own bucket, own data dir, local S3."""
    bucket = f"landing-{next(_bucket_ids)}"
    env = {
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CHURN_LANDING_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "CHURN_START_DATE": "2024-01-01",
    }
    resolved = Settings.from_env(env)
    ensure_bucket(s3_client(s3_endpoint), bucket)
    return resolved


@pytest.fixture
def s3(settings):
    return s3_client(settings.s3_endpoint_url)


def event_table(day: dt.date, n: int, start_id: int = 0, **overrides) -> pa.Table:
    """n valid contract rows on `day` (logins, sessions and payments in turn)."""
    types = ["login", "session", "payment"]
    rows = {
        "event_id": [f"e{start_id + i}" for i in range(n)],
        "user_id": [i % 7 for i in range(n)],
        "event_type": [types[i % 3] for i in range(n)],
        "event_ts": [dt.datetime.combine(day, dt.time(12), dt.timezone.utc)] * n,
        "plan_tier": ["basic"] * n,
        "session_seconds": [120.0 if types[i % 3] == "session" else None for i in range(n)],
        "payment_status": ["failed" if types[i % 3] == "payment" else None for i in range(n)],
    }
    rows.update(overrides)
    schema = pa.schema([
        ("event_id", pa.string()), ("user_id", pa.int64()), ("event_type", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")), ("plan_tier", pa.string()),
        ("session_seconds", pa.float64()), ("payment_status", pa.string()),
    ])
    return pa.table(rows, schema=schema)


def put_table(s3, bucket: str, key: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())


# A small but realistic landed history, ingested once per session and copied per test.
DEMO_END = dt.date(2024, 5, 26)  # a Sunday: the as-of date of weekly partition 2024-05-20
DEMO_DAYS = 147
DEMO_USERS = 12000
DEMO_GATES = {"CHURN_GATE_MIN_TRAINING_ROWS": "1000"}


def demo_env(data_dir, endpoint: str, bucket: str, **extra) -> dict[str, str]:
    return {
        "CHURN_DATA_DIR": str(data_dir),
        "AWS_ENDPOINT_URL_S3": endpoint,
        "CHURN_LANDING_BUCKET": bucket,
        "CHURN_START_DATE": (DEMO_END - dt.timedelta(days=DEMO_DAYS - 1)).isoformat(),
        **DEMO_GATES,
        **extra,
    }


@pytest.fixture(scope="session")
def ingested_demo(tmp_path_factory, s3_endpoint):
    """Generated events landed in S3 and ingested (raw_events + daily activity) in one run."""
    import dagster as dg

    from churn_platform.cli import seed
    from churn_platform.definitions import build_definitions
    from churn_platform.jobs import INGEST_JOB

    data_dir = tmp_path_factory.mktemp("ingested") / "data"
    settings = Settings.from_env(demo_env(data_dir, s3_endpoint, "demo-landing"))
    seed(settings, DEMO_USERS, DEMO_DAYS, DEMO_END, 11)
    result = build_definitions(settings).resolve_job_def(INGEST_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": settings.start_date.isoformat(),
            "dagster/asset_partition_range_end": DEMO_END.isoformat(),
        },
    )
    assert result.success
    return settings


@pytest.fixture
def demo_settings(ingested_demo, tmp_path) -> Settings:
    """A private copy of the ingested warehouse: tests may write to it freely."""
    import shutil

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(ingested_demo.warehouse_path, data_dir / "warehouse.duckdb")
    return ingested_demo.with_overrides(data_dir=data_dir, mlflow_tracking_uri=f"sqlite:///{data_dir}/mlflow.db")
