"""Alert on every failed run: which job, which assets or gates failed, and a link to the run."""

import dagster as dg

from churn_platform.resources.notify import Notifier

RUN_FAILURE_SENSOR = "run_failure_alert"


def failure_message(context: dg.RunFailureSensorContext, ui_url: str) -> str:
    run = context.dagster_run
    failed_steps = [event.step_key for event in context.get_step_failure_events()]
    assets = sorted(key.to_user_string() for key in run.asset_selection or ())
    partition = run.tags.get("dagster/partition") or "-".join(
        filter(None, [run.tags.get("dagster/asset_partition_range_start"),
                      run.tags.get("dagster/asset_partition_range_end")])
    )
    lines = [
        f":rotating_light: Run failed: {run.job_name}" + (f" [{partition}]" if partition else ""),
        f"failed steps: {', '.join(failed_steps) or 'none (run-level failure)'}",
        f"assets in run: {', '.join(assets) or 'n/a'}",
        f"error: {context.failure_event.message}",
        f"{ui_url.rstrip('/')}/runs/{run.run_id}",
    ]
    return "\n".join(lines)


def build_run_failure_sensor(ui_url: str) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends an alert (Slack or log) naming the failed steps of every failed run.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext, notifier: Notifier):
        notifier.send(failure_message(context, ui_url), log=context.log)

    return run_failure_alert
