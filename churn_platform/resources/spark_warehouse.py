"""The Spark warehouse: tables in a Spark catalog, reached through Spark processes.

Locally the catalog is Derby, which admits one process at a time: every Spark process of the
platform (a SQL session here, a dbt run, an ingest or scoring job) holds the warehouse lock
exclusively. A cluster catalog (Glue, Hive metastore, Unity) has no such limit; the lock
then only orders the platform's own writers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow as pa

from churn_platform.resources.warehouse import Warehouse
from churn_platform.spark.conf import SPARK_DATABASE, encode_conf
from churn_platform.spark.sql_server import encode_args
from churn_platform.warehouse_lock import HeldLock, acquire_lock


class SparkSqlError(RuntimeError):
    """A statement failed in the Spark session; the message carries Spark's error and the SQL."""


class SparkConnection:
    """A DB-API-like face on a child Spark SQL session: execute, then fetch."""

    def __init__(self, process: subprocess.Popen):
        self._process = process
        self._table: pa.Table | None = None
        self.description: list[tuple] = []

    def execute(self, sql: str, params=None) -> SparkConnection:
        request = {"sql": sql, "args": encode_args(params or [])}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise SparkSqlError(f"the Spark SQL session exited (code {self._process.wait()}) running:\n{sql}")
        answer = json.loads(line)
        if "error" in answer:
            raise SparkSqlError(f"{answer['error']}\nin:\n{sql}")
        with pa.memory_map(answer["path"]) as source:
            self._table = pa.ipc.open_file(source).read_all()
        os.unlink(answer["path"])
        self.description = [(name, None, None, None, None, None, None) for name in answer["columns"]]
        return self

    def fetchall(self) -> list[tuple]:
        columns = [self._table.column(i).to_pylist() for i in range(self._table.num_columns)]
        return list(zip(*columns)) if columns else []

    def fetchone(self) -> tuple | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def df(self):
        return self._table.to_pandas()

    def table_exists(self, name: str) -> bool:
        return bool(self.execute(f"SHOW TABLES IN {SPARK_DATABASE} LIKE '{name}'").fetchall())


class SparkWarehouse(Warehouse):
    """Tables in the Spark catalog described by `conf` (local: Derby and parquet under spark_dir)."""

    spark_dir: str
    conf: dict[str, str]
    staging_uri: str | None = None  # where jobs read handed-over files; default a folder in spark_dir
    lock_timeout_seconds: float = 3600.0

    @property
    def engine(self) -> str:
        return "spark"

    def lock(self, exclusive: bool) -> HeldLock:
        """Always exclusive: the local Derby catalog admits one Spark process, reader or writer."""
        return acquire_lock(Path(self.spark_dir) / "catalog", True, self.lock_timeout_seconds,
                            dg.get_dagster_logger())

    def staging_root(self) -> str:
        """Where the orchestrator hands files to Spark jobs (churn_platform/ingest/staging.py)."""
        return self.staging_uri or str(Path(self.spark_dir) / "staging")

    def dbt_environment(self) -> dict[str, str]:
        """dbt's Spark session gets the JVM options of ours (catalog home, UTC, class archive)."""
        return {"CHURN_SPARK_DRIVER_JAVA_OPTIONS": self.conf["spark.driver.extraJavaOptions"],
                "SPARK_LOCAL_IP": "127.0.0.1"}

    def job_environment(self) -> dict[str, str]:
        """What a Spark job process needs: its session settings, and this Python for its
        Python workers (scoring runs our model in them)."""
        return {"CHURN_SPARK_CONF": encode_conf(self.conf), "PYSPARK_PYTHON": sys.executable,
                "SPARK_LOCAL_IP": "127.0.0.1"}  # a local driver listens on loopback only

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[SparkConnection]:
        with self.lock(exclusive=True):
            Path(self.spark_dir).mkdir(parents=True, exist_ok=True)
            # Spark's console chatter goes to a log beside the catalog; errors come back as answers.
            with open(Path(self.spark_dir) / "sql_session.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "churn_platform.spark.sql_server", encode_conf(self.conf)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=self.spark_dir,
                    env={**os.environ, **self.job_environment()},
                )
            try:
                ready = process.stdout.readline()
                if not ready:
                    raise SparkSqlError(f"the Spark SQL session did not start (exit code {process.wait()}); "
                                        f"see {Path(self.spark_dir) / 'sql_session.log'}")
                yield SparkConnection(process)
            finally:
                process.stdin.close()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
