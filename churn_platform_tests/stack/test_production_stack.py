"""End to end through the production topology, as the UI drives it (GraphQL), and what it stores:
runs in PostgreSQL, step logs and model artifacts in S3, models on the tracking server."""

from __future__ import annotations

import datetime as dt

import pytest

from churn_platform.automation import AUTOMATION_SENSOR
from churn_platform.constants import CHAMPION_ALIAS, CHURN_SCORES, RAW_EVENTS, REGISTERED_MODEL_NAME
from churn_platform.dev import topology
from churn_platform.jobs import INGEST_JOB, TRAINING_JOB
from churn_platform.windows import WeekWindow
from churn_platform_tests.dagster_ui import LAUNCH_BACKFILL, SENSOR_QUERY, wait_for
from churn_platform_tests.helpers import DEMO_END, K

pytestmark = pytest.mark.stack

def test_a_landed_file_becomes_a_sensor_run_stored_in_postgres_with_logs_in_s3(production_stack):
    stack = production_stack
    day = DEMO_END + dt.timedelta(days=1)
    stack.land_day(day, rows=40)

    run = stack.wait_for_sensor_run(day)
    assert run["jobName"] == INGEST_JOB
    assert stack.partition_status(RAW_EVENTS, day.isoformat()) == "MATERIALIZED"

    # Dagster's storage is PostgreSQL: the run is a row there, with its outcome.
    assert stack.dagster_db("SELECT status FROM runs WHERE run_id = %s", (run["runId"],)) == [("SUCCESS",)]
    # Step logs went to the compute-log bucket, under the run's id.
    logs = stack.s3.list_objects_v2(Bucket=topology.COMPUTE_LOG_BUCKET, Prefix="compute-logs/storage/"
                                    f"{run['runId']}/")
    assert logs.get("KeyCount", 0) > 0, "no compute log of the run in S3"
    stack.wait_until_idle(stack.run_timeout)
    with stack.warehouse().connect(read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM raw_events WHERE event_date = ?", [day]).fetchone()[0]
    assert rows == 40


def test_the_weekly_job_trains_registers_on_the_tracking_server_and_scores(production_stack):
    stack = production_stack
    before = stack.model_versions()
    run_id = stack.launch_run(TRAINING_JOB, tags={"dagster/partition": K})
    stack.assert_run_succeeded(run_id, stack.training_timeout)

    after = stack.model_versions()
    assert len(after) == len(before) + 1, (before, after)
    [new] = set(after) - set(before)
    version = stack.mlflow.get_model_version(REGISTERED_MODEL_NAME, new)
    champion = stack.mlflow.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    assert champion.version == new, "the first model that passes the gates becomes champion"
    # The tracking server proxies artifacts into the S3 bucket: the model's files are objects there.
    artifacts = stack.s3.list_objects_v2(Bucket=topology.MLFLOW_ARTIFACT_BUCKET)
    keys = [obj["Key"] for obj in artifacts.get("Contents", [])]
    assert any(version.run_id in key for key in keys), f"no artifact of run {version.run_id} in S3: {keys[:10]}"

    stack.wait_until_idle(stack.run_timeout)
    as_of = WeekWindow.of(dt.date.fromisoformat(K)).last_as_of
    with stack.warehouse().connect(read_only=True) as con:
        scored = con.execute(f"SELECT count(*), min(model_version), max(model_version) FROM {CHURN_SCORES} "
                             "WHERE as_of_date = ?", [as_of]).fetchone()
    assert scored[0] > 0 and scored[1] == scored[2] == new, scored


def test_a_backfill_runs_once_and_automation_is_on_as_in_make_dev(production_stack):
    stack = production_stack
    days = [DEMO_END + dt.timedelta(days=40 + i) for i in range(2)]
    for day in days:  # one at a time: landed together, the sensor would ingest them in one range run
        stack.land_day(day, rows=30)
        stack.wait_for_sensor_run(day)
    stack.wait_until_idle(stack.run_timeout)

    # The operator re-runs both days from the UI: one run (single-run backfill), the same rows.
    launched = stack.graphql(LAUNCH_BACKFILL, params={
        "assetSelection": [{"path": [RAW_EVENTS]}], "partitionNames": [day.isoformat() for day in days],
    })["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = stack.wait_for_backfill(launched["backfillId"], stack.run_timeout)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert len(backfill["runs"]) == 1 and backfill["runs"][0]["status"] == "SUCCESS", backfill["runs"]
    stack.wait_until_idle(stack.run_timeout)
    with stack.warehouse().connect(read_only=True) as con:
        counts = dict(con.execute("SELECT event_date, count(*) FROM raw_events WHERE event_date IN (?, ?) "
                                  "GROUP BY event_date", days).fetchall())
    assert counts == dict.fromkeys(days, 30), counts

    # Declarative automation runs here as in `make dev`: its sensor is on, evaluated by the daemon.
    selector = {**stack.repository_selector(), "sensorName": AUTOMATION_SENSOR}
    automation = stack.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]
    assert automation["__typename"] == "Sensor", automation
    assert automation["sensorState"]["status"] == "RUNNING"
    wait_for("an automation tick", lambda: stack.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]
             ["sensorState"]["ticks"], stack.run_timeout)
