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
