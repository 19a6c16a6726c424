"""The landing sensor: turns what landed in S3 into ingest runs, by listing or by S3 events.

Without a queue it lists the bucket every tick (`s3_landing.plan_tick`); with
CHURN_LANDING_QUEUE_URL it reads S3's notifications from SQS and lists only the dates they name,
sweeping the whole bucket less often (`landing_events.plan_event_tick`). Either way it then adds
the follow-ups of finished runs (retries, aggregates), and shapes the requests into runs: one
per range of consecutive dates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time

import dagster as dg

from churn_platform.constants import USER_DAILY_ACTIVITY
from churn_platform.jobs import INGEST_JOB
from churn_platform.resources.landing import LandingZone
from churn_platform.resources.landing_queue import LandingQueue
from churn_platform.sensors.ingest_outcomes import RetryLimits, plan_followups
from churn_platform.sensors.ingest_runs import review_finished_runs
from churn_platform.sensors.landing_events import QueueLimits, plan_event_tick
from churn_platform.sensors.s3_landing import LANDING_SENSOR, LandingCursor, TickLimits, TickPlan, plan_tick

def coalesce_into_ranges(requests: list[dg.RunRequest]) -> list[dg.RunRequest]:
    """One run per run of consecutive dates, as a single-run backfill would do.

    Catching up (first start, a long outage) then costs a few runs instead of one per day;
    each range run ingests a day at a time. A lone date keeps its plain partition request.
    """
    by_day = sorted(requests, key=lambda r: r.partition_key)
    groups: list[list[dg.RunRequest]] = []
    for request in by_day:
        day = dt.date.fromisoformat(request.partition_key)
        if groups and dt.date.fromisoformat(groups[-1][-1].partition_key) == day - dt.timedelta(days=1):
            groups[-1].append(request)
        else:
            groups.append([request])
    coalesced = []
    for group in groups:
        if len(group) == 1:
            coalesced.append(group[0])
            continue
        first, last = group[0].partition_key, group[-1].partition_key
        digest = hashlib.sha256("|".join(r.run_key for r in group).encode()).hexdigest()[:16]
        coalesced.append(
            dg.RunRequest(
                run_key=f"{first}..{last}:{digest}",
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                },
            )
        )
    return coalesced


def build_landing_sensor(
    start_date: dt.date,
    job_name: str = INGEST_JOB,
    limits: TickLimits = TickLimits(),
    minimum_interval_seconds: int = 30,
    retry_limits: RetryLimits = RetryLimits(),
    queue_limits: QueueLimits | None = None,
) -> dg.SensorDefinition:
    """The sensor over the landing bucket; `start_date` is the first daily partition.

    With `queue_limits` it runs in event mode and needs the `landing_queue` resource.
    """

    def evaluate(context: dg.SensorEvaluationContext, landing: LandingZone, queue: LandingQueue | None):
        cursor = LandingCursor.from_json(context.cursor)
        today = dt.datetime.now(dt.timezone.utc).date()
        if queue is None:
            plan = plan_tick(landing.client(), landing.bucket, cursor, today, start_date, limits)
            tick_report = plan.report()
        else:
            tick = plan_event_tick(landing.client(), landing.bucket, queue, cursor, today, start_date,
                                   time.time(), limits, queue_limits)
            plan, tick_report = tick.plan, tick.report()
        return _with_followups(context, cursor, plan, tick_report, retry_limits)

    description = (
        "Requests an ingest run for each date whose files under events/raw/ are new, late or rewritten"
        + (" (S3 notifications from SQS, and a periodic listing sweep)" if queue_limits else "")
        + "; retries dates that failed for a transient reason, aggregates days a failed range run "
        "loaded, and names what is pending; reports keys outside the layout."
    )
    decorator = dg.sensor(name=LANDING_SENSOR, job_name=job_name, minimum_interval_seconds=minimum_interval_seconds,
                          default_status=dg.DefaultSensorStatus.RUNNING, description=description)
    if queue_limits is None:
        @decorator
        def s3_landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
            return evaluate(context, landing, None)
    else:
        @decorator
        def s3_landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone,
                              landing_queue: LandingQueue):
            return evaluate(context, landing, landing_queue)
    return s3_landing_sensor


def _with_followups(context, cursor: LandingCursor, plan: TickPlan, tick_report: str,
                    retry_limits: RetryLimits) -> dg.SensorResult:
    """Adds retries and aggregates for finished runs, and returns the tick's result."""
    outcomes, reviewed = review_finished_runs(context.instance, LANDING_SENSOR, cursor.reviewed)
    requested_days = [r.partition_key for r in plan.run_requests]
    followups = plan_followups(outcomes, cursor.pending, time.time(), retry_limits)
    pending = followups.pending.forget(requested_days)  # new files supersede a pending retry
    new_cursor = dataclasses.replace(plan.new_cursor, pending=pending, reviewed=reviewed)
    retries = [
        dg.RunRequest(run_key=f"{day}:{new_cursor.requested.get(day, '-')}:retry{attempt}", partition_key=day)
        for day, attempt in followups.ingest_days if day not in requested_days
    ]
    aggregates = aggregate_requests(followups.aggregate_days, new_cursor)
    report = "; ".join(filter(None, [tick_report, followups.report(time.time())]))
    requests = coalesce_into_ranges(plan.run_requests + retries) + aggregates
    if not requests:
        return dg.SensorResult(cursor=new_cursor.to_json(), skip_reason=report)
    log = context.log.warning if plan.skipped_keys or pending.waiting or pending.gave_up else context.log.info
    log(report)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor.to_json())


def aggregate_requests(days: list[str], cursor: LandingCursor) -> list[dg.RunRequest]:
    """user_daily_activity alone for days whose raw_events loaded: one run per consecutive range.

    Run keys carry each day's file digest and retry attempt, so a later failure of the same
    day (new files, or a failed aggregate) is never mistaken for a run already launched.
    """
    def key(day: str) -> str:
        retry = cursor.pending.retries.get(day)
        return f"{day}:{cursor.requested.get(day, '-')}:aggregate{retry.attempt if retry else 0}"

    selection = [dg.AssetKey(USER_DAILY_ACTIVITY)]
    return [
        dg.RunRequest(run_key=f"aggregate:{group.run_key}", partition_key=group.partition_key,
                      tags=group.tags, asset_selection=selection)
        for group in coalesce_into_ranges([dg.RunRequest(run_key=key(d), partition_key=d) for d in days])
    ]
