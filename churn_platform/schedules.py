"""The weekly training schedule: Monday 01:00 UTC, for the week that just ended."""

import dagster as dg

WEEKLY_TRAINING_SCHEDULE = "weekly_training_schedule"


def build_schedules(training_job) -> list[dg.ScheduleDefinition]:
    return [
        dg.build_schedule_from_partitioned_job(
            training_job,
            name=WEEKLY_TRAINING_SCHEDULE,
            hour_of_day=1,
            minute_of_hour=0,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="Features, labels, training, promotion and scores of the latest complete week.",
        )
    ]
