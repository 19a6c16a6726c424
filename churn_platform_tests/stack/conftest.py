"""One production stack (`make stack`'s topology) for the session: PostgreSQL, MLflow server,
code server, webserver and daemon, over a loopback S3 server, on free ports.

It starts from the session's demo warehouse (147 days of raw events, the features of K-4), so
weekly partition K can train at once; its landing bucket starts empty.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import psycopg2
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn_platform.constants import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from churn_platform.dev import topology
from churn_platform.dev.local_s3 import local_s3_server
from churn_platform.dev.production_stack import ProductionStack, log_tail
from churn_platform.dev.s3 import s3_client
from churn_platform.events import landing_key
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.settings import START_DATE_FILE
from churn_platform_tests.dagster_ui import SENSOR_QUERY, DagsterUI, run_tags, wait_for
from churn_platform_tests.helpers import DEMO_GATES, event_table, free_port, put_table

STARTUP_TIMEOUT = 180
LANDING_SENSOR = "s3_landing_sensor"
SENSOR_RUN_TIMEOUT = 120
RUN_TIMEOUT = 180
TRAINING_TIMEOUT = 420


@dataclass
class RunningStack(DagsterUI):
    """The stack's GraphQL API plus handles on its parts, for assertions and faults."""

    stack: ProductionStack | None = field(default=None, repr=False)
    run_timeout: ClassVar[float] = RUN_TIMEOUT
    training_timeout: ClassVar[float] = TRAINING_TIMEOUT

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

    def land_day(self, day: dt.date, rows: int = 40) -> None:
        put_table(self.s3, self.landing_bucket, landing_key(day.isoformat(), "part-000.parquet"),
                  event_table(day, rows))

    def sensor_runs(self, day: dt.date) -> list[dict]:
        """Runs the sensor requested for `day` (a re-execution carries its parent's tags: not one)."""
        runs = self.runs(tags={"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": day.isoformat()})
        return [run for run in runs if "dagster/parent_run_id" not in run_tags(run)]

    def wait_for_sensor_run(self, day: dt.date) -> dict:
        """The one run the sensor requests for `day`, once it succeeded."""
        runs = wait_for(f"a sensor run for {day}", lambda: self.sensor_runs(day), SENSOR_RUN_TIMEOUT)
        assert len(runs) == 1, runs
        return self.assert_run_succeeded(runs[0]["runId"], RUN_TIMEOUT)

    def sensor_ticked_after(self, since: float) -> bool:
        """Whether the landing sensor completed a tick after `since` (epoch seconds)."""
        selector = {**self.repository_selector(), "sensorName": LANDING_SENSOR}
        ticks = self.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]["ticks"]
        return any(t["timestamp"] > since and t["status"] in ("SUCCESS", "SKIPPED") for t in ticks)

    def model_versions(self) -> list[str]:
        return sorted(v.version for v in self.mlflow.search_model_versions(f"name='{REGISTERED_MODEL_NAME}'"))

    def champion(self) -> str | None:
        try:
            return self.mlflow.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise


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
            stack = ProductionStack(layout, endpoint, ports, extra_env={**DEMO_GATES, "CHURN_LANDING_SENSOR_INTERVAL_SECONDS": "5"})
            with stack:
                running = RunningStack(url=stack.ui_url, stack=stack)
                running.wait_until_location_loaded()
                yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)
