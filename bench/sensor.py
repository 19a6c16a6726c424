"""The S3 landing sensor's tick on a big bucket, listing mode and event mode.

100k keys are loaded through moto's in-process backend (the HTTP server in this process
shares it; a put over HTTP costs ~3.5 ms), then every tick goes over HTTP like the sensor's.
Event mode: the same bucket notifies an SQS queue on the same server; 100 new files land over
HTTP (so S3 sends their notifications) and one tick reads the queue and lists their dates only.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from dataclasses import dataclass

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from churn_platform.dev.generator import part_key
from churn_platform.dev.s3 import ensure_bucket, ensure_landing_queue
from churn_platform.resources.landing_queue import LandingQueue
from churn_platform.sensors.landing_events import QueueLimits, plan_event_tick
from churn_platform.sensors.s3_landing import LandingCursor, QueueState, TickLimits, plan_tick

BUCKET = "bench-sensor"
TODAY = dt.date(2024, 6, 1)
KEYS = 100_000
FILES_PER_DATE = 100
NEW_KEYS = 100
LATE_DATES = 10  # old dates that receive late files among the new keys
MAX_TICKS = 30


class TimedClient:
    """Delegates list_objects_v2 to a boto3 client and adds up the time spent in it."""

    def __init__(self, client):
        self._client = client
        self.list_seconds = 0.0

    def list_objects_v2(self, **kwargs):
        started = time.perf_counter()
        try:
            return self._client.list_objects_v2(**kwargs)
        finally:
            self.list_seconds += time.perf_counter() - started


@dataclass(frozen=True)
class Tick:
    seconds: float
    list_seconds: float
    list_calls: int
    requested: list[str]

    @property
    def own_seconds(self) -> float:
        """plan_tick's time outside the list calls."""
        return self.seconds - self.list_seconds


@dataclass(frozen=True)
class SensorBench:
    keys: int
    new_keys: int
    changed_dates: int
    limits: TickLimits
    idle: list[Tick]  # ticks with nothing new
    catch_up: list[Tick]  # ticks after the new keys landed, until every changed date was requested

    @property
    def ticks(self) -> list[Tick]:
        return self.idle + self.catch_up

    @property
    def median_seconds(self) -> float:
        return statistics.median(t.seconds for t in self.ticks)

    @property
    def max_seconds(self) -> float:
        return max(t.seconds for t in self.ticks)

    @property
    def max_own_seconds(self) -> float:
        return max(t.own_seconds for t in self.ticks)

    @property
    def max_list_calls(self) -> int:
        return max(t.list_calls for t in self.ticks)

    @property
    def seconds_per_list_call(self) -> float:
        return sum(t.list_seconds for t in self.ticks) / sum(t.list_calls for t in self.ticks)


def _tick(client, cursor: LandingCursor, start_date: dt.date, limits: TickLimits):
    timed = TimedClient(client)
    started = time.perf_counter()
    plan = plan_tick(timed, BUCKET, cursor, TODAY, start_date, limits)
    tick = Tick(time.perf_counter() - started, timed.list_seconds, plan.list_calls,
                [r.partition_key for r in plan.run_requests])
    return plan.new_cursor, tick


@dataclass(frozen=True)
class EventTickBench:
    keys: int
    new_keys: int
    changed_dates: int
    seconds: float  # the tick that read the notices
    list_calls: int
    receive_calls: int
    requested: int
    next_seconds: float  # the tick after: deletes the messages, reads an empty queue
    next_calls: int

    @property
    def api_calls(self) -> int:
        return self.list_calls + self.receive_calls


def run(client, idle_ticks: int = 3, limits: TickLimits = TickLimits()) -> SensorBench:
    """Load KEYS keys, settle the cursor, tick idle, land NEW_KEYS keys and tick until all are requested."""
    ensure_bucket(client, BUCKET)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    dates = [TODAY - dt.timedelta(days=d) for d in range(KEYS // FILES_PER_DATE, 0, -1)]
    for day in dates:
        for part in range(FILES_PER_DATE):
            backend.put_object(BUCKET, part_key(day, part), b"")

    # A cold start lists everything once; the cursor then holds every date as requested.
    pages = -(-KEYS // limits.page_size)
    settle = TickLimits(max_list_calls=2 * pages + 4, max_run_requests=len(dates) + 1,
                        page_size=limits.page_size, hot_days=limits.hot_days)
    cursor, _ = _tick(client, LandingCursor(), dates[0], settle)

    idle = []
    for _ in range(idle_ticks):
        cursor, tick = _tick(client, cursor, dates[0], limits)
        idle.append(tick)

    late = random.Random(0).sample(dates[:-limits.hot_days], LATE_DATES)
    per_late = NEW_KEYS // 2 // LATE_DATES
    new_keys = [part_key(day, FILES_PER_DATE + i) for day in late for i in range(per_late)]
    new_keys += [part_key(dates[-1], FILES_PER_DATE + i) for i in range(NEW_KEYS - len(new_keys))]
    for key in new_keys:
        backend.put_object(BUCKET, key, b"new")
    changed = {d.isoformat() for d in [*late, dates[-1]]}

    catch_up, requested = [], set()
    while not changed <= requested and len(catch_up) < MAX_TICKS:
        cursor, tick = _tick(client, cursor, dates[0], limits)
        catch_up.append(tick)
        requested |= set(tick.requested)
    if not changed <= requested:
        raise RuntimeError(f"dates never requested after {MAX_TICKS} ticks: {sorted(changed - requested)}")
    return SensorBench(len(dates) * FILES_PER_DATE + len(new_keys), len(new_keys), len(changed), limits,
                       idle, catch_up)


def run_event_mode(client, endpoint: str, limits: TickLimits = TickLimits()) -> EventTickBench:
    """After `run`: the same bucket, now notifying a queue; 100 more files on 11 dates, one tick."""
    queue = LandingQueue(queue_url=ensure_landing_queue(endpoint, BUCKET, name="bench-landing"),
                         endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id="local", aws_secret_access_key="local")
    first = TODAY - dt.timedelta(days=KEYS // FILES_PER_DATE)
    keys = sum(1 for _ in _all_keys(client))
    settle = TickLimits(max_list_calls=2 * (-(-keys // limits.page_size)) + 4, max_run_requests=2000,
                        page_size=limits.page_size, hot_days=limits.hot_days)
    cursor = plan_tick(client, BUCKET, LandingCursor(), TODAY, first, settle).new_cursor
    cursor = LandingCursor(requested=cursor.requested, hot=cursor.hot, queue=QueueState(swept_at=time.time()))
    queue.delete([m.receipt_handle for m in queue.receive(10, 30)[0]])  # S3's test event

    old = [TODAY - dt.timedelta(days=d) for d in random.Random(1).sample(range(5, 900), LATE_DATES)]
    new_keys = [part_key(day, 2 * FILES_PER_DATE + i) for day in old for i in range(NEW_KEYS // 2 // LATE_DATES)]
    yesterday = TODAY - dt.timedelta(days=1)
    new_keys += [part_key(yesterday, 2 * FILES_PER_DATE + i) for i in range(NEW_KEYS - len(new_keys))]
    for key in new_keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"event")
    due_later = QueueLimits(max_receive_calls=NEW_KEYS // 10 + 1, sweep_interval_seconds=3600)
    started = time.perf_counter()
    tick = plan_event_tick(client, BUCKET, queue, cursor, TODAY, first, time.time(), limits, due_later)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    after = plan_event_tick(client, BUCKET, queue, tick.plan.new_cursor, TODAY, first, time.time(), limits, due_later)
    next_seconds = time.perf_counter() - started
    if tick.notices.messages != len(new_keys):
        raise RuntimeError(f"{tick.notices.messages} notices read for {len(new_keys)} new files")
    return EventTickBench(keys + len(new_keys), len(new_keys), len(old) + 1, seconds, tick.plan.list_calls,
                          tick.receive_calls, len(tick.plan.run_requests), next_seconds, after.api_calls)


def _all_keys(client):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        yield from (obj["Key"] for obj in page.get("Contents", []))
