"""One production stack (`make stack`'s topology) for the session: PostgreSQL, MLflow server,
code server, webserver and daemon, over a loopback S3 server, on free ports.

It starts from the session's demo warehouse (147 days of raw events, the features of K-4), so
weekly partition K can train at once; its landing bucket starts empty.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
from mlflow import MlflowClient

from churn_platform.dev import topology
from churn_platform.dev.local_s3 import local_s3_server
from churn_platform.dev.production_stack import ProductionStack, log_tail
from churn_platform.dev.s3 import s3_client
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.settings import START_DATE_FILE
from churn_platform_tests.dagster_ui import DagsterUI
from churn_platform_tests.helpers import DEMO_GATES, free_port

STARTUP_TIMEOUT = 180


@dataclass
class RunningStack(DagsterUI):
    """The stack's GraphQL API plus handles on its parts, for assertions and faults."""

    stack: ProductionStack | None = field(default=None, repr=False)

    @property
    def s3(self):
        return s3_client(self.stack.s3_endpoint)

    @property
    def mlflow(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.stack.mlflow_url, registry_uri=self.stack.mlflow_url)

    @property
    def landing_bucket(self) -> str:
        return self.stack.landing_bucket

    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(path=str(self.stack.layout.data_dir / "warehouse.duckdb"))

    def dagster_db(self, sql: str, params=()) -> list[tuple]:
        """Query Dagster's own storage in PostgreSQL."""
        cluster = self.stack.postgres
        with psycopg2.connect(host=cluster.host, port=cluster.port, user=topology.POSTGRES_USER,
                              password=cluster.password, dbname=topology.DAGSTER_DB) as conn:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()

    def wait_until_location_loaded(self, timeout: float = STARTUP_TIMEOUT) -> None:
        webserver = self.stack.services["webserver"]
        self.wait_until_loaded(webserver.alive, lambda: log_tail(webserver.log_path), timeout)


@pytest.fixture(scope="session")
def production_stack(ingested_demo, training_inputs) -> Iterator[RunningStack]:
    # Not under pytest's tmp folder: that is private to us (0700), and as root the PostgreSQL
    # server runs as `postgres`, which must be able to reach its cluster.
    root = Path(tempfile.mkdtemp(prefix="churn-stack-"))
    root.chmod(0o755)
    layout = topology.Layout(root)
    layout.data_dir.mkdir(parents=True)
    shutil.copy(training_inputs, layout.data_dir / "warehouse.duckdb")
    (layout.data_dir / START_DATE_FILE).write_text(ingested_demo.start_date.isoformat())
    ports = topology.Ports(ui=free_port(), s3=0, mlflow=free_port(), postgres=free_port(),
                           code_server=free_port())
    try:
        with local_s3_server(port=0) as endpoint:
            stack = ProductionStack(layout, endpoint, ports, extra_env=dict(DEMO_GATES))
            with stack:
                running = RunningStack(url=stack.ui_url, stack=stack)
                running.wait_until_location_loaded()
                yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)
