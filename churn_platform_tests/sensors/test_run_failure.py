"""The failure alert names the failed step and links the run; unconfigured Slack falls back to the log."""

import logging

import dagster as dg

from churn_platform.definitions import build_definitions
from churn_platform.resources.notify import Notifier
from churn_platform.sensors.run_failure import RUN_FAILURE_SENSOR, failure_message


def test_alert_for_a_failed_ingest_run(settings, caplog):
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("raw_events")})
    result = job.execute_in_process(partition_key="2024-01-05", instance=instance, raise_on_error=False)
    assert not result.success  # nothing landed for that day

    failure_event = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR,
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    message = failure_message(context, "http://127.0.0.1:3000")
    assert "Run failed: __ASSET_JOB [2024-01-05]" in message
    assert "failed steps: raw_events" in message
    assert f"http://127.0.0.1:3000/runs/{result.run_id}" in message

    with caplog.at_level(logging.INFO, logger="churn_platform.notify"):
        assert Notifier().send(message) is False
    assert "[notification] :rotating_light: Run failed" in caplog.text


def test_sensor_is_running_by_default(settings):
    sensor = build_definitions(settings).resolve_sensor_def(RUN_FAILURE_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
