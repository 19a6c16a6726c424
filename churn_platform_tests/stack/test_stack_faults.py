"""Faults in the production topology, made to happen: each test asserts what the user then sees
(run outcomes, the code location's status, sensor requests) and that nothing was lost or doubled."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests

from churn_platform.constants import RAW_EVENTS
from churn_platform.jobs import TRAINING_JOB
from churn_platform_tests.dagster_ui import wait_for
from churn_platform_tests.helpers import DEMO_END, K

pytestmark = pytest.mark.stack

RECOVERY_TIMEOUT = 120
MODEL_STEP = "churn_model"


def _pids(stack, services) -> dict[str, int]:
    return {name: stack.stack.services[name].proc.pid for name in services}


def test_daemon_killed_during_a_run_nothing_is_stuck_or_requested_twice(production_stack):
    stack = production_stack
    day = DEMO_END + dt.timedelta(days=10)
    stack.land_day(day)
    [run] = wait_for(f"the sensor's run for {day}", lambda: stack.sensor_runs(day), RECOVERY_TIMEOUT)
    wait_for("the run to start", lambda: stack.run(run["runId"])["status"] == "STARTED", stack.run_timeout, 0.5)

    stack.stack.services["daemon"].kill()  # kill -9 of the daemon's whole process group
    stack.stack.restart("daemon")
    restarted = time.time()

    # Resolved, never stuck: the worker outlives the daemon (the code server launched it) and
    # run monitoring, back with the daemon, would fail it had it died.
    finished = stack.wait_for_run(run["runId"], stack.run_timeout)
    assert finished["status"] in ("SUCCESS", "FAILURE"), finished
    strategy = "ALL_STEPS" if finished["status"] == "SUCCESS" else "FROM_FAILURE"
    stack.assert_run_succeeded(stack.reexecute(run["runId"], strategy), stack.run_timeout)
    # The restarted daemon's sensor resumed from its cursor: the day was requested once.
    wait_for("a sensor tick after the restart", lambda: stack.sensor_ticked_after(restarted), RECOVERY_TIMEOUT)
    assert len(stack.sensor_runs(day)) == 1, stack.sensor_runs(day)


def test_code_server_killed_shows_unavailable_then_sensors_resume_from_their_cursors(production_stack):
    stack = production_stack
    stack.wait_until_idle(stack.run_timeout)
    ingested_before = DEMO_END + dt.timedelta(days=20)
    stack.land_day(ingested_before)
    stack.wait_for_sensor_run(ingested_before)

    stack.stack.services["code_server"].kill()

    def unavailable():
        entry = stack.location_entry()
        return entry and entry["locationOrLoadError"]["__typename"] == "PythonError"

    wait_for("the webserver to report the code location unavailable", unavailable, RECOVERY_TIMEOUT, 1)
    landed_while_down = DEMO_END + dt.timedelta(days=21)
    stack.land_day(landed_while_down)

    stack.stack.restart("code_server")
    restarted = time.time()

    def available():
        entry = stack.location_entry()
        return entry and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"

    # No reload button pressed: the webserver watches the server and reloads the location itself.
    wait_for("the webserver to load the code location again", available, RECOVERY_TIMEOUT, 1)
    stack.wait_for_sensor_run(landed_while_down)
    wait_for("a sensor tick after the restart", lambda: stack.sensor_ticked_after(restarted), RECOVERY_TIMEOUT)
    assert len(stack.sensor_runs(landed_while_down)) == 1
    assert len(stack.sensor_runs(ingested_before)) == 1, "a day ingested before the crash was requested again"


def test_postgres_restarted_while_idle_webserver_and_daemon_reconnect_on_their_own(production_stack):
    stack = production_stack
    stack.wait_until_idle(stack.run_timeout)
    services = ("webserver", "daemon", "code_server")
    before = _pids(stack, services)

    stack.stack.restart("postgres")

    def answers():
        """Runs, partitions and sensor state: one query per storage (run, event log, schedule).
        The webserver keeps one pooled connection per storage; after a restart each fails one
        request (HTTP 500), is dropped, and the next request reconnects."""
        try:
            stack.runs()
            stack.partition_status(RAW_EVENTS, DEMO_END.isoformat())
            stack.sensor_ticked_after(0)
        except (AssertionError, requests.RequestException):
            return False
        return True

    wait_for("the webserver to answer from PostgreSQL again", answers, RECOVERY_TIMEOUT, 1)
    for _ in range(3):  # and keeps answering: no stale connection left behind
        assert answers()
    day = DEMO_END + dt.timedelta(days=30)
    stack.land_day(day)
    stack.wait_for_sensor_run(day)  # the daemon ticked, queued and launched: it reconnected
    assert _pids(stack, services) == before, "a service was restarted"
    assert all(stack.stack.services[name].alive() for name in services)


def test_tracking_server_down_during_training_fails_clearly_then_a_rerun_succeeds(production_stack):
    stack = production_stack
    stack.wait_until_idle(stack.run_timeout)
    versions_before = stack.model_versions()
    champion_before = stack.champion()

    stack.stack.services["mlflow"].stop()
    try:
        run_id = stack.launch_run(TRAINING_JOB, tags={"dagster/partition": K})
        failed = stack.wait_for_run(run_id, stack.training_timeout)
    finally:
        stack.stack.restart("mlflow")
    assert failed["status"] == "FAILURE"
    events = stack.run_events(run_id)
    retries = [e for e in events if e["__typename"] == "ExecutionStepUpForRetryEvent" and e["stepKey"] == MODEL_STEP]
    assert len(retries) == 3, f"the model step retries with backoff, 3 times: {len(retries)}"
    [failure] = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent" and e["stepKey"] == MODEL_STEP]
    # The UI shows Dagster's "Exceeded max_retries of 3", caused by our error naming the server.
    error = failure["error"]
    assert "Exceeded max_retries of 3" in error["message"], error
    cause = (error["cause"] or {}).get("message", "")
    assert f"MLflow at {stack.stack.mlflow_url} failed to" in cause and "after 4 attempts" in cause, error

    # Nothing half-made: no new version, the alias where it was.
    assert stack.model_versions() == versions_before
    assert stack.champion() == champion_before

    rerun = stack.reexecute(run_id, "FROM_FAILURE")
    stack.assert_run_succeeded(rerun, stack.training_timeout)
    assert len(stack.model_versions()) == len(versions_before) + 1
