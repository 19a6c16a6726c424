"""Event mode of the landing sensor: S3 notifications through a real SQS queue on the loopback server."""

import datetime as dt
import json
import time
from urllib.parse import quote_plus

import dagster as dg
import pytest

from churn_platform.dev.s3 import ensure_landing_queue, sqs_client
from churn_platform.resources import build_resources, queue_region
from churn_platform.resources.landing_queue import QueueMessage
from churn_platform.sensors.landing_events import QueueLimits, plan_event_tick
from churn_platform.sensors.landing_notices import read_notices
from churn_platform.sensors.landing_sensor import build_landing_sensor
from churn_platform.sensors.s3_landing import LandingCursor, QueueState, TickLimits, plan_tick

TODAY = dt.date(2024, 3, 1)
OLD = dt.date(2024, 1, 15)  # far outside the hot scan: only a notice or the sweep finds it
NOT_DUE = QueueLimits(sweep_interval_seconds=3600)


def _key(day: dt.date, name: str = "part-000.parquet") -> str:
    return f"events/raw/date={day.isoformat()}/{name}"


@pytest.fixture
def queue(settings):
    url = ensure_landing_queue(settings.s3_endpoint_url, settings.landing_bucket, name=settings.landing_bucket)
    return build_resources(settings.with_overrides(landing_queue_url=url))["landing_queue"]


def _messages_left(queue) -> int:
    attributes = sqs_client(queue.endpoint_url).get_queue_attributes(
        QueueUrl=queue.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def _tick(s3, settings, queue, cursor, queue_limits=NOT_DUE, limits=TickLimits(), now=None):
    cursor = LandingCursor.from_json(cursor.to_json())  # what the daemon stores and hands back
    return plan_event_tick(s3, settings.landing_bucket, queue, cursor, TODAY, settings.start_date,
                           time.time() if now is None else now, limits, queue_limits)


def _notice(bucket: str, key: str) -> str:
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}}}
    return json.dumps({"Records": [record]})


def _swept(cursor: LandingCursor) -> LandingCursor:
    """A cursor whose last sweep was just now, so a tick reads the queue only."""
    return LandingCursor(queue=QueueState(swept_at=time.time()))


def test_notices_decode_keys_and_report_what_is_not_a_landing_event():
    record = {"eventName": "ObjectCreated:CompleteMultipartUpload",
              "s3": {"bucket": {"name": "landing"}, "object": {"key": "events%2Fraw%2Fdate%3D2024-01-15%2Fa+b%2B1.parquet"}}}
    other = {**record, "s3": {**record["s3"], "bucket": {"name": "elsewhere"}}}
    sns = {"Type": "Notification", "Message": json.dumps({"Records": [record]})}
    bodies = [json.dumps({"Records": [record]}), json.dumps({"Event": "s3:TestEvent", "Bucket": "landing"}),
              "{not json", json.dumps({"Records": [other]}), json.dumps(sns), json.dumps({"Records": []})]
    notices = read_notices([QueueMessage(f"m{i}", f"h{i}", body) for i, body in enumerate(bodies)], "landing")
    assert notices.keys == ["events/raw/date=2024-01-15/a b+1.parquet"] * 2
    assert (notices.messages, notices.test_events) == (6, 1)
    assert [mid for mid, _ in notices.rejected] == ["m2", "m3", "m5"]
    assert "elsewhere" in dict(notices.rejected)["m3"]
    assert "3 unreadable" in notices.report()


def test_a_landed_file_is_requested_from_its_notice_with_the_listing_run_key(settings, s3, queue):
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(OLD, "a b.parquet"), Body=b"x")
    tick = _tick(s3, settings, queue, _swept(LandingCursor()))
    [request] = tick.plan.run_requests
    listing = plan_tick(s3, settings.landing_bucket, LandingCursor(), TODAY, settings.start_date)
    assert [request.run_key] == [r.run_key for r in listing.run_requests]  # the same run key as the sweep's
    assert not tick.swept and tick.notices.test_events == 1  # S3's test event, sent when the queue was set
    assert tick.plan.list_calls == 2  # the notified date, and the hot scan
    # The messages are deleted by the next tick, once this tick's requests are recorded.
    assert len(tick.plan.new_cursor.queue.to_delete) == 2 and _messages_left(queue) == 2
    after = _tick(s3, settings, queue, tick.plan.new_cursor)
    assert after.delete_calls == 1 and not after.delete_failures and after.plan.run_requests == []
    assert _messages_left(queue) == 0


def test_a_duplicate_notice_and_the_sweep_do_not_request_a_date_twice(settings, s3, queue):
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(OLD), Body=b"x")
    first = _tick(s3, settings, queue, _swept(LandingCursor()))
    assert len(first.plan.run_requests) == 1
    sqs_client(queue.endpoint_url).send_message(  # at-least-once delivery: the same notice again
        QueueUrl=queue.queue_url, MessageBody=_notice(settings.landing_bucket, _key(OLD)))
    duplicate = _tick(s3, settings, queue, first.plan.new_cursor)
    assert duplicate.notices.keys == [_key(OLD)] and duplicate.plan.run_requests == []
    due = _tick(s3, settings, queue, duplicate.plan.new_cursor, QueueLimits(sweep_interval_seconds=1),
                now=time.time() + 5)
    assert due.swept and due.plan.run_requests == [] and due.plan.new_cursor.queue.swept_at > 0
    # A rewrite of the same key is a new version: requested again, with a new run key.
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(OLD), Body=b"y")
    rewritten = _tick(s3, settings, queue, due.plan.new_cursor)
    assert [r.partition_key for r in rewritten.plan.run_requests] == [OLD.isoformat()]
    assert rewritten.plan.run_requests[0].run_key != first.plan.run_requests[0].run_key


def test_a_file_whose_notice_was_lost_is_found_by_the_sweep(settings, s3, queue):
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(OLD), Body=b"x")
    sqs_client(queue.endpoint_url).purge_queue(QueueUrl=queue.queue_url)
    quiet = _tick(s3, settings, queue, _swept(LandingCursor()))
    assert quiet.plan.run_requests == [] and quiet.notices.messages == 0
    due = _tick(s3, settings, queue, quiet.plan.new_cursor, QueueLimits(sweep_interval_seconds=1), now=time.time() + 5)
    assert due.swept and [r.partition_key for r in due.plan.run_requests] == [OLD.isoformat()]


def test_dates_beyond_the_run_quota_wait_in_the_cursor_not_in_the_queue(settings, s3, queue):
    days = [OLD + dt.timedelta(days=2 * i) for i in range(5)]
    for day in days:
        s3.put_object(Bucket=settings.landing_bucket, Key=_key(day), Body=b"x")
    limits = TickLimits(max_run_requests=3, hot_days=1)
    first = _tick(s3, settings, queue, _swept(LandingCursor()), limits=limits)
    assert len(first.plan.run_requests) == 3 and len(first.plan.new_cursor.queue.backlog) == 2
    second = _tick(s3, settings, queue, first.plan.new_cursor, limits=limits)
    requested = [r.partition_key for r in first.plan.run_requests + second.plan.run_requests]
    assert sorted(requested) == [d.isoformat() for d in days] and second.plan.new_cursor.queue.backlog == ()


def test_a_tick_costs_calls_for_the_new_files_not_the_bucket(settings, s3, queue):
    for i in range(40):  # an older history: 40 dates, several pages at 5 keys a page
        s3.put_object(Bucket=settings.landing_bucket, Key=_key(dt.date(2024, 1, 1) + dt.timedelta(days=i)), Body=b"x")
    limits = TickLimits(page_size=5)
    settled = _tick(s3, settings, queue, LandingCursor(), QueueLimits(max_receive_calls=20), limits=limits)
    while not settled.plan.sweep_wrapped or settled.plan.new_cursor.queue.backlog:  # the first pass ends
        settled = _tick(s3, settings, queue, settled.plan.new_cursor, limits=limits)
    new = [dt.date(2024, 2, 20), dt.date(2024, 2, 21)]
    for day in new:
        s3.put_object(Bucket=settings.landing_bucket, Key=_key(day, "late.parquet"), Body=b"x")
    tick = _tick(s3, settings, queue, settled.plan.new_cursor, limits=limits)
    assert sorted(r.partition_key for r in tick.plan.run_requests) == [d.isoformat() for d in new]
    assert tick.plan.list_calls == len(new) + 1  # one per notified date, one hot scan


def test_the_sensor_in_event_mode_requests_and_deletes_through_its_resources(settings, s3, queue):
    today = dt.datetime.now(dt.timezone.utc).date()
    day = today - dt.timedelta(days=20)
    s3.put_object(Bucket=settings.landing_bucket, Key=_key(day), Body=b"x")
    sensor = build_landing_sensor(start_date=today - dt.timedelta(days=30), queue_limits=NOT_DUE)
    resources = {"landing": build_resources(settings)["landing"], "landing_queue": queue}
    cursor = _swept(LandingCursor()).to_json()
    with dg.build_sensor_context(cursor=cursor, resources=resources, instance=dg.DagsterInstance.ephemeral()) as ctx:
        result = sensor(ctx)
    assert [r.partition_key for r in result.run_requests] == [day.isoformat()]
    with dg.build_sensor_context(cursor=result.cursor, resources=resources,
                                 instance=dg.DagsterInstance.ephemeral()) as ctx:
        again = sensor(ctx)
    assert again.run_requests == [] and "queue: 0 message(s)" in again.skip_reason.skip_message
    assert _messages_left(queue) == 0


def test_the_queue_region_comes_from_an_aws_queue_url():
    assert queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/landing") == "eu-west-1"
    assert queue_region("http://127.0.0.1:9000/123456789012/landing") is None
