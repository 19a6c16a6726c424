"""Helpers shared by the tests (test modules import from here, never from each other)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from churn_platform.definitions import build_definitions
from churn_platform.events import LANDED_SCHEMA
from churn_platform.ml.params import TrainingParams
from churn_platform.settings import PROJECT_ROOT, Settings

# A small but realistic landed history, ingested once per session and copied per test.
DEMO_END = dt.date(2024, 5, 26)  # a Sunday: the as-of date of weekly partition 2024-05-20
DEMO_DAYS = 147
DEMO_USERS = 12000
DEMO_GATES = {"CHURN_GATE_MIN_TRAINING_ROWS": "1000"}
# Weekly partitions of the demo history: K trains on the features of K-4.
K = "2024-05-20"  # as-of 2024-05-26; labels of as-of 2024-04-28
K_MINUS_4 = "2024-04-22"


def demo_env(data_dir, endpoint: str, bucket: str, **extra) -> dict[str, str]:
    return {
        "CHURN_DATA_DIR": str(data_dir),
        "AWS_ENDPOINT_URL_S3": endpoint,
        "CHURN_LANDING_BUCKET": bucket,
        "CHURN_START_DATE": (DEMO_END - dt.timedelta(days=DEMO_DAYS - 1)).isoformat(),
        **DEMO_GATES,
        **extra,
    }


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
    schema = pa.schema([pa.field(f.name, f.type) for f in LANDED_SCHEMA])  # all nullable: tests send nulls
    return pa.table(rows, schema=schema)


def put_table(s3, bucket: str, key: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())


def materialize(settings: Settings, assets: list[str], partition: str, instance=None, checks=True):
    """Materialize `assets` (with their checks unless checks=False) for one partition, in process."""
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = {dg.AssetKey(a) for a in assets}
    if checks:
        job = job.get_subset(asset_selection=keys)
    else:
        job = job.get_subset(asset_selection=keys, asset_check_selection=set())
    return job.execute_in_process(
        partition_key=partition, instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def query(settings: Settings, sql: str, params=None):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


_HOLDER = """
import sys, time, duckdb
from churn_platform.warehouse_lock import acquire_lock
path, how, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
with acquire_lock(path, exclusive=how != "read", timeout_seconds=60):
    con = duckdb.connect(path, read_only=how == "read") if how != "lock" else None
    print("held", flush=True)
    time.sleep(seconds)
    if con is not None:
        con.close()
print("released", time.time(), flush=True)
"""


@contextmanager
def warehouse_held(path, how: str, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holding the warehouse for `seconds` as DuckDBWarehouse.connect does (the
    lock, then the DuckDB file) to "write" or "read", or the write "lock" alone; then it prints
    `released <time.time()>`. Killed at the end.
    (The resource itself would import all of Dagster: seconds per process.)"""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), how, str(seconds)],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def failure_message(result, step: str) -> str:
    return result.failure_data_for_node(step).error.message


# MLflow on a temporary sqlite store (ml/ and resources/ tests). mlflow and sklearn are
# imported inside the helpers: every test session imports this module.
FAST_TRAINING_PARAMS = TrainingParams(max_iter=30)  # small models keep the suite fast
WEAK_TRAINING_PARAMS = TrainingParams(max_iter=3, max_leaf_nodes=2)
MLFLOW_PARTITION_KEY = "2024-02-05"


def migrate_mlflow_store(path: Path) -> Path:
    """An empty MLflow sqlite store at path: migrations take ~2 s per new file, so copy it."""
    from churn_platform.ml.mlflow_io import connect

    connect(f"sqlite:///{path}").search_experiments()
    return path


def fast_mlflow_retry():
    """Retries with millisecond waits, so retry tests take no time."""
    from churn_platform.ml.mlflow_io import MlflowRetry

    return MlflowRetry(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.02)


def register_training(client, artifact_root, trained, partition_key: str = MLFLOW_PARTITION_KEY):
    """log_and_register as churn_model calls it, with fast retries."""
    from churn_platform.ml.registration import log_and_register

    return log_and_register(
        client,
        trained,
        artifact_root=artifact_root,
        partition_key=partition_key,
        dagster_run_id=f"dagster-run-{partition_key}",
        data_window="as_of 2024-01-07, labels (2024-01-07, 2024-02-04]",
        retry=fast_mlflow_retry(),
    )
