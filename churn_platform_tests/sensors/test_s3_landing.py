"""The S3 landing sensor against the loopback S3 server: what it requests, skips and defers."""

import datetime as dt
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import duckdb
import pytest

from churn_platform.definitions import build_definitions
from churn_platform.jobs import INGEST_JOB
from churn_platform.resources import build_resources
from churn_platform.sensors.s3_landing import (
    BEFORE_START,
    NOT_A_DATE,
    OUTSIDE_LAYOUT,
    LandingCursor,
    TickLimits,
    plan_tick,
)
from churn_platform.sensors.landing_sensor import build_landing_sensor
from churn_platform_tests.helpers import event_table, put_table

TODAY = dt.date(2024, 3, 1)
YESTERDAY = TODAY - dt.timedelta(days=1)
OLD = dt.date(2024, 1, 15)


def _key(day: dt.date, name: str = "part-000.parquet") -> str:
    return f"events/raw/date={day.isoformat()}/{name}"


def _put(s3, bucket: str, key: str, body: bytes = b"x") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def _tick(s3, settings, cursor, today=TODAY, limits=TickLimits()):
    plan = plan_tick(s3, settings.landing_bucket, cursor, today, settings.start_date, limits)
    assert plan.list_calls <= limits.max_list_calls
    assert len(plan.run_requests) <= limits.max_run_requests
    return plan


def _days(plan) -> list[str]:
    return [request.partition_key for request in plan.run_requests]


def _settle(s3, settings, cursor, limits, today=TODAY, max_ticks=60):
    """Tick until a whole rolling pass requests nothing; returns the cursor, requests and ticks."""
    requests, ticks, requests_this_pass = [], 0, 0
    while ticks < max_ticks:
        plan = _tick(s3, settings, cursor, today, limits)
        cursor, ticks = plan.new_cursor, ticks + 1
        requests += plan.run_requests
        requests_this_pass += len(plan.run_requests)
        if cursor.rolling.after == "":  # the rolling scan wrapped
            if requests_this_pass == 0:
                return cursor, requests, ticks
            requests_this_pass = 0
    raise AssertionError(f"still requesting runs after {max_ticks} ticks")


def test_new_file_requested_once(settings, s3):
    _put(s3, settings.landing_bucket, _key(YESTERDAY))
    first = _tick(s3, settings, LandingCursor())
    [request] = first.run_requests
    assert request.partition_key == YESTERDAY.isoformat()
    assert request.run_key.startswith(f"{YESTERDAY.isoformat()}:")
    assert first.list_calls == 2  # one hot call, one rolling call
    again = _tick(s3, settings, LandingCursor.from_json(first.new_cursor.to_json()))
    assert again.run_requests == []


def test_several_files_for_one_date_make_one_request(settings, s3):
    for i in range(5):
        _put(s3, settings.landing_bucket, _key(OLD, f"part-{i}.parquet"))
    _put(s3, settings.landing_bucket, _key(YESTERDAY))
    plan = _tick(s3, settings, LandingCursor())
    assert sorted(_days(plan)) == [OLD.isoformat(), YESTERDAY.isoformat()]


def test_rewrite_requests_again_unchanged_object_never(settings, s3):
    bucket = settings.landing_bucket
    _put(s3, bucket, _key(OLD), b"first")
    first = _tick(s3, settings, LandingCursor())
    _put(s3, bucket, _key(OLD), b"first")  # same bytes, same ETag: not a new version
    same = _tick(s3, settings, first.new_cursor)
    assert same.run_requests == []
    _put(s3, bucket, _key(OLD), b"second")
    rewritten = _tick(s3, settings, same.new_cursor)
    assert _days(rewritten) == [OLD.isoformat()]
    assert rewritten.run_requests[0].run_key != first.run_requests[0].run_key
    cursor = rewritten.new_cursor
    for _ in range(3):
        plan = _tick(s3, settings, cursor)
        assert plan.run_requests == []
        cursor = plan.new_cursor


def test_late_file_for_old_date_found_within_bound(settings, s3):
    bucket = settings.landing_bucket
    days = [settings.start_date + dt.timedelta(days=i) for i in range(40)]
    for day in days:
        for i in range(5):
            _put(s3, bucket, _key(day, f"part-{i}.parquet"))
    limits = TickLimits(max_list_calls=4, max_run_requests=10, page_size=10, hot_days=3)
    cursor, requests, _ = _settle(s3, settings, LandingCursor(), limits)
    assert sorted(r.partition_key for r in requests) == [d.isoformat() for d in days]
    for _ in range(3):  # move the rolling scan past the first days
        cursor = _tick(s3, settings, cursor, limits=limits).new_cursor
    assert cursor.rolling.after > _key(days[3])

    _put(s3, bucket, _key(days[1], "late.parquet"))
    pages = math.ceil((len(days) * 5 + 1) / limits.page_size)
    rolling_calls = limits.max_list_calls - limits.max_list_calls // 2
    bound = math.ceil(pages / rolling_calls) + 1
    for ticks in range(1, bound + 1):
        plan = _tick(s3, settings, cursor, limits=limits)
        cursor = plan.new_cursor
        if plan.run_requests:
            break
    assert _days(plan) == [days[1].isoformat()], f"nothing requested within {bound} ticks"
    assert ticks > 1  # it really was behind the rolling scan


def test_junk_keys_skipped_and_reported(settings, s3):
    bucket = settings.landing_bucket
    junk = {
        "events/raw/garbage.txt": OUTSIDE_LAYOUT,
        "events/raw/date=../../x.parquet": OUTSIDE_LAYOUT,
        "events/raw/date=2024-13-45/a.parquet": NOT_A_DATE,
        _key(OLD, "nested/a.parquet"): OUTSIDE_LAYOUT,
        _key(OLD, "notes.txt"): OUTSIDE_LAYOUT,
        _key(settings.start_date - dt.timedelta(days=1)): BEFORE_START,
    }
    for key in junk:
        _put(s3, bucket, key)
    _put(s3, bucket, _key(OLD))
    plan = _tick(s3, settings, LandingCursor())
    assert _days(plan) == [OLD.isoformat()]
    assert {s.key: s.reason for s in plan.skipped_keys} == junk
    assert "events/raw/date=../../x.parquet" in plan.report()
    assert set(plan.new_cursor.requested) == {OLD.isoformat()}

    junk_only = _tick(s3, settings, plan.new_cursor)
    assert junk_only.run_requests == [] and len(junk_only.skipped_keys) == len(junk)


def test_dates_not_yet_partitions_are_deferred_then_requested(settings, s3):
    bucket = settings.landing_bucket
    future = TODAY + dt.timedelta(days=5)
    _put(s3, bucket, _key(TODAY))
    _put(s3, bucket, _key(future))
    plan = _tick(s3, settings, LandingCursor())
    assert plan.run_requests == []
    assert plan.deferred_dates == [TODAY.isoformat(), future.isoformat()]
    assert plan.new_cursor.requested == {}

    next_day = _tick(s3, settings, plan.new_cursor, today=TODAY + dt.timedelta(days=1))
    assert _days(next_day) == [TODAY.isoformat()]
    assert next_day.deferred_dates == [future.isoformat()]
    later = _tick(s3, settings, next_day.new_cursor, today=future + dt.timedelta(days=1))
    assert _days(later) == [future.isoformat()]


def test_thousands_of_keys_bounded_ticks_each_date_once(settings, s3):
    """2,000 keys at 100 a page stand for a large bucket (bench/ runs 100k): the same arithmetic."""
    bucket = settings.landing_bucket
    days = [settings.start_date + dt.timedelta(days=i) for i in range(50)]
    keys = [_key(day, f"part-{i:03d}.parquet") for day in days for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: _put(s3, bucket, key), keys))
    today = days[-1] + dt.timedelta(days=1)
    limits = TickLimits(max_list_calls=8, max_run_requests=20, page_size=100, hot_days=3)

    cursor, requests, ticks = _settle(s3, settings, LandingCursor(), limits, today=today)
    assert Counter(r.partition_key for r in requests) == {d.isoformat(): 1 for d in days}
    assert len({r.run_key for r in requests}) == len(days)
    assert ticks > 1  # a full bucket is caught up over several ticks
    assert len(cursor.to_json().encode()) < 40 * len(days) + 500

    # 100 new files, one for each hot day and the rest late for 20 old dates, with the default
    # limits: one tick requests all 23 dates, with one hot call plus one call per 1000 keys.
    new = [_key(day, "new.parquet") for day in days[-3:]]
    new += [_key(days[i % 20], f"late-{i}.parquet") for i in range(97)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: _put(s3, bucket, key), new))
    plan = _tick(s3, settings, cursor, today=today)
    assert sorted(_days(plan)) == sorted(d.isoformat() for d in days[:20] + days[-3:])
    assert plan.list_calls == 1 + math.ceil((len(keys) + len(new)) / 1000)


def test_sensor_definition_requests_runs_of_the_ingest_job(settings, s3):
    today = dt.datetime.now(dt.timezone.utc).date()
    start = today - dt.timedelta(days=30)
    yesterday, late = today - dt.timedelta(days=1), today - dt.timedelta(days=10)
    bucket = settings.landing_bucket
    put_table(s3, bucket, _key(yesterday), event_table(yesterday, 5))
    put_table(s3, bucket, _key(yesterday, "part-001.parquet"), event_table(yesterday, 5, 5))
    put_table(s3, bucket, _key(late), event_table(late, 5))
    put_table(s3, bucket, _key(today), event_table(today, 5))
    _put(s3, bucket, "events/raw/date=../../x.parquet")

    sensor = build_landing_sensor(start_date=start)
    assert sensor.job_name == INGEST_JOB
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    resources = {"landing": build_resources(settings)["landing"]}
    instance = dg.DagsterInstance.ephemeral()

    with dg.build_sensor_context(cursor=None, resources=resources, instance=instance) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    requested = {r.partition_key: r.run_key for r in result.run_requests}
    assert set(requested) == {yesterday.isoformat(), late.isoformat()}
    assert all(run_key.startswith(f"{day}:") for day, run_key in requested.items())
    defs = build_definitions(settings.with_overrides(start_date=start))
    job = defs.resolve_job_def(sensor.job_name)
    assert all(job.partitions_def.has_partition_key(day) for day in requested)

    with dg.build_sensor_context(
        cursor=result.cursor, resources=resources, instance=instance
    ) as context:
        again = sensor(context)
    assert again.run_requests == []
    assert "events/raw/date=../../x.parquet" in again.skip_reason.skip_message
    assert today.isoformat() in again.skip_reason.skip_message


@pytest.mark.parametrize(
    "limits",
    [
        {"max_list_calls": 1},
        {"hot_days": 25, "max_run_requests": 25},
        {"page_size": 1001},
    ],
)
def test_limits_that_could_stall_the_sensor_are_refused(limits):
    with pytest.raises(ValueError):
        TickLimits(**limits)


def test_catch_up_coalesces_consecutive_dates_into_range_runs(settings, s3):
    today = dt.datetime.now(dt.timezone.utc).date()
    start = today - dt.timedelta(days=30)
    days = [today - dt.timedelta(days=n) for n in (12, 11, 10, 3)]
    for i, day in enumerate(days):
        put_table(s3, settings.landing_bucket, _key(day), event_table(day, 6, start_id=100 * i))
    sensor = build_landing_sensor(start_date=start)
    resources = {"landing": build_resources(settings)["landing"]}
    with dg.build_sensor_context(cursor=None, resources=resources, instance=dg.DagsterInstance.ephemeral()) as ctx:
        requests = sensor(ctx).run_requests
    assert len(requests) == 2
    ranged = next(r for r in requests if r.partition_key is None)
    assert (ranged.tags["dagster/asset_partition_range_start"], ranged.tags["dagster/asset_partition_range_end"]) == (
        days[0].isoformat(), days[2].isoformat())
    assert next(r for r in requests if r.partition_key).partition_key == days[3].isoformat()

    # The daemon launches the request as it is: one run loads the three days.
    defs = build_definitions(settings.with_overrides(start_date=start))
    result = defs.resolve_job_def(INGEST_JOB).execute_in_process(
        tags=ranged.tags, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        loaded = dict(con.execute("SELECT event_date, count(*) FROM raw_events GROUP BY 1").fetchall())
    assert loaded == {day: 6 for day in days[:3]}
