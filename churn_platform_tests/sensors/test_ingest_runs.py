"""The landing sensor reads how its runs ended: aggregates what a partial run loaded, waits on bad
input until the files change, and retries transient failures with backoff (real S3, instance, runs)."""

import datetime as dt
import time

import dagster as dg
import duckdb

from churn_platform.definitions import build_definitions
from churn_platform.jobs import INGEST_JOB
from churn_platform.resources import build_resources
from churn_platform.sensors.ingest_outcomes import RetryLimits
from churn_platform.sensors.landing_sensor import build_landing_sensor
from churn_platform.sensors.s3_landing import LANDING_SENSOR, LandingCursor
from churn_platform_tests.helpers import event_table, put_table

SENSOR_TAG = {"dagster/sensor_name": LANDING_SENSOR}


def _key(day: dt.date, name: str = "part-000.parquet") -> str:
    return f"events/raw/date={day.isoformat()}/{name}"


class Harness:
    """The sensor evaluated tick by tick on a real instance; requests run as the daemon would."""

    def __init__(self, settings, start: dt.date, retry_limits: RetryLimits):
        self.settings = settings.with_overrides(start_date=start)
        self.sensor = build_landing_sensor(start_date=start, retry_limits=retry_limits)
        self.resources = {"landing": build_resources(self.settings)["landing"]}
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None
        self.job = build_definitions(self.settings).resolve_job_def(INGEST_JOB)

    def tick(self):
        with dg.build_sensor_context(cursor=self.cursor, resources=self.resources, instance=self.instance) as ctx:
            result = self.sensor(ctx)
        self.cursor = result.cursor
        return result

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        tags = {**request.tags, **SENSOR_TAG}
        return self.job.execute_in_process(partition_key=request.partition_key, tags=tags,
                                           asset_selection=request.asset_selection,
                                           instance=self.instance, raise_on_error=False)

    def aggregated_days(self) -> set[dt.date]:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as con:
            exists = con.execute("SELECT count(*) FROM information_schema.tables "
                                 "WHERE table_name = 'user_daily_activity'").fetchone()[0]
            if not exists:
                return set()
            return {row[0] for row in con.execute("SELECT DISTINCT activity_date FROM user_daily_activity").fetchall()}


def test_a_partial_range_is_aggregated_and_its_bad_day_waits_for_new_files(settings, s3):
    today = dt.datetime.now(dt.timezone.utc).date()
    d1, d2, d3 = (today - dt.timedelta(days=n) for n in (4, 3, 2))
    bucket = settings.landing_bucket
    put_table(s3, bucket, _key(d1), event_table(d1, 10))
    s3.put_object(Bucket=bucket, Key=_key(d2), Body=b"not parquet")
    put_table(s3, bucket, _key(d3), event_table(d3, 12, start_id=100))
    harness = Harness(settings, start=today - dt.timedelta(days=10), retry_limits=RetryLimits())

    [ranged] = harness.tick().run_requests
    assert not harness.launch(ranged).success  # d2 is bad: the range run fails...
    assert harness.aggregated_days() == set()  # ...and its dbt step never ran

    followup = harness.tick()
    assert sorted(r.partition_key for r in followup.run_requests) == [d1.isoformat(), d3.isoformat()]
    assert all(r.asset_selection == [dg.AssetKey("user_daily_activity")] for r in followup.run_requests)
    for request in followup.run_requests:
        assert harness.launch(request).success
    assert harness.aggregated_days() == {d1, d3}

    quiet = harness.tick()
    assert quiet.run_requests == []
    assert f"{d2}: waiting for new or changed files" in quiet.skip_reason.skip_message
    assert _key(d2) in quiet.skip_reason.skip_message
    assert LandingCursor.from_json(harness.cursor).pending.retries == {}  # bad input is not retried

    put_table(s3, bucket, _key(d2), event_table(d2, 7, start_id=200))  # the producer fixes the file
    fixed = harness.tick()
    assert [r.partition_key for r in fixed.run_requests] == [d2.isoformat()]
    assert harness.launch(fixed.run_requests[0]).success
    harness.tick()
    assert LandingCursor.from_json(harness.cursor).pending.waiting == {}
    assert harness.aggregated_days() == {d1, d2, d3}


def test_a_run_that_died_is_requested_again_with_backoff(settings, s3):
    """A killed worker or the runtime cap: the run ends FAILURE with nothing loaded and no step error."""
    today = dt.datetime.now(dt.timezone.utc).date()
    day = today - dt.timedelta(days=2)
    put_table(s3, settings.landing_bucket, _key(day), event_table(day, 9))
    harness = Harness(settings, start=today - dt.timedelta(days=10),
                      retry_limits=RetryLimits(max_attempts=3, base_delay_seconds=0.5))
    [request] = harness.tick().run_requests
    run = harness.instance.create_run_for_job(harness.job, run_id=None, tags={**request.tags, **SENSOR_TAG,
                                              "dagster/partition": day.isoformat()})
    harness.instance.report_run_failed(run, message="run worker killed (simulated by the test)")

    waiting = harness.tick()
    assert waiting.run_requests == []
    assert f"{day}: ingest retry 1 in" in waiting.skip_reason.skip_message
    deadline = time.monotonic() + 10
    while not (due := harness.tick()).run_requests:
        assert time.monotonic() < deadline, "the retry never became due"
        time.sleep(0.1)
    [retry] = due.run_requests
    assert retry.partition_key == day.isoformat() and retry.run_key.endswith(":retry1")
    assert harness.launch(retry).success
    harness.tick()
    assert LandingCursor.from_json(harness.cursor).pending.retries == {}
    assert harness.aggregated_days() == {day}
