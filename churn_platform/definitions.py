"""The code location (`dagster dev -m churn_platform.definitions`): assets, checks, jobs and
sensors (automation among them) assembled from one Settings object."""

from __future__ import annotations

import dagster as dg

from churn_platform.assets.daily_activity import build_daily_activity
from churn_platform.assets.dbt import build_dbt_assets
from churn_platform.assets.model import build_model_assets
from churn_platform.assets.raw_events import build_raw_events
from churn_platform.assets.realized import build_realized_performance
from churn_platform.checks.feature_gates import build_feature_gates
from churn_platform.automation import build_automation_sensor
from churn_platform.jobs import build_jobs
from churn_platform.partitions import daily_partitions, weekly_partitions
from churn_platform.resources import build_resources
from churn_platform.sensors.freshness_alert import build_freshness_alert_sensor
from churn_platform.sensors.run_failure import build_run_failure_sensor
from churn_platform.sensors.landing_events import QueueLimits
from churn_platform.sensors.landing_sensor import build_landing_sensor
from churn_platform.settings import Settings
from churn_platform.telemetry import disable_telemetry


def build_definitions(settings: Settings) -> dg.Definitions:
    daily = daily_partitions(settings.start_date)
    weekly = weekly_partitions(settings.start_date)
    return dg.Definitions(
        assets=[
            build_raw_events(daily, settings.gate_thresholds, settings.engine),
            build_daily_activity(daily, settings.engine),
            *build_dbt_assets(weekly),
            *build_model_assets(weekly, settings.gate_thresholds, settings.engine, settings.contact_economics),
            build_realized_performance(weekly, settings.gate_thresholds),
        ],
        asset_checks=build_feature_gates(weekly, settings.gate_thresholds),
        jobs=build_jobs(),
        sensors=[
            build_automation_sensor(settings.automation_interval_seconds),
            build_landing_sensor(
                settings.start_date, minimum_interval_seconds=settings.landing_sensor_interval_seconds,
                queue_limits=QueueLimits(sweep_interval_seconds=settings.landing_sweep_interval_seconds)
                if settings.landing_queue_url else None),
            build_run_failure_sensor(settings.ui_url),
            build_freshness_alert_sensor(settings.ui_url, settings.freshness_alert_interval_seconds),
        ],
        resources=build_resources(settings),
        # Steps share one process: a per-step process start costs more than our steps save
        # by running in parallel on a two-core machine with a single-writer warehouse.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -m churn_platform.definitions` (and `dg`); reads the environment only when called."""
    disable_telemetry()
    return build_definitions(Settings.from_env())
