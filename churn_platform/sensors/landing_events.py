"""Event mode of the landing sensor: a tick driven by the SQS queue of S3 notifications.

A tick deletes the messages the previous tick read (its run requests and cursor are recorded
by then: Dagster stores a tick's requests before it moves the cursor), reads a bounded batch,
and lists only the dates the messages name, one call each. Its cost follows the new files,
not the bucket. The listing sweep (`plan_tick`'s hot and rolling scans) still runs: the hot scan
every tick (one call; it also picks up files that landed for today once today is a partition),
the rolling scan once per `sweep_interval_seconds`, finishing a pass over as many ticks as it
needs. The sweep finds what the queue never said: a message lost or deleted, a queue that was
down, a deleted file. Both request a date by the digest of its listing, so neither repeats the
other's run.

If a tick fails after reading, its messages become visible again after the visibility timeout
and are read again; a date whose listing was already requested is not requested twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from churn_platform.resources.landing_queue import LandingQueue
from churn_platform.sensors.landing_notices import Notices, read_notices
from churn_platform.sensors.s3_landing import LandingCursor, QueueState, ScanState, TickLimits, TickPlan, plan_tick


@dataclass(frozen=True)
class QueueLimits:
    """Work one event-mode tick may do with the queue: at most 100 messages by default."""

    max_receive_calls: int = 10  # each returns up to 10 messages
    visibility_timeout_seconds: int = 300  # longer than a tick interval: hidden until deleted
    sweep_interval_seconds: int = 600  # a full listing sweep starts this often


@dataclass(frozen=True)
class EventTick:
    plan: TickPlan
    notices: Notices
    receive_calls: int
    delete_calls: int
    delete_failures: list[str]
    swept: bool

    @property
    def api_calls(self) -> int:
        return self.plan.list_calls + self.receive_calls + self.delete_calls

    def report(self) -> str:
        parts = [f"queue: {self.notices.report()}"]
        if self.delete_failures:
            parts.append(f"{len(self.delete_failures)} message(s) of the last tick not deleted "
                         f"({self.delete_failures[0]}); they come back and are recognised")
        parts.append(self.plan.report() + (" (sweep)" if self.swept else ""))
        return "; ".join(parts)


def plan_event_tick(
    client,
    bucket: str,
    queue: LandingQueue,
    cursor: LandingCursor,
    today: dt.date,
    start_date: dt.date,
    now: float,
    limits: TickLimits = TickLimits(),
    queue_limits: QueueLimits = QueueLimits(),
) -> EventTick:
    """One event-mode tick; the new cursor holds the receipt handles to delete next tick."""
    delete_calls, delete_failures = queue.delete(list(cursor.queue.to_delete))
    messages, receive_calls = queue.receive(queue_limits.max_receive_calls, queue_limits.visibility_timeout_seconds)
    notices = read_notices(messages, bucket)
    mid_pass = cursor.rolling != ScanState()
    sweep = mid_pass or now - cursor.queue.swept_at >= queue_limits.sweep_interval_seconds
    plan = plan_tick(client, bucket, cursor, today, start_date, limits, notified_keys=notices.keys, sweep=sweep)
    queue_state = QueueState(
        to_delete=tuple(m.receipt_handle for m in messages),
        backlog=tuple(plan.backlog),
        swept_at=now if plan.sweep_wrapped else cursor.queue.swept_at,
    )
    plan = dataclasses.replace(plan, new_cursor=dataclasses.replace(plan.new_cursor, queue=queue_state))
    return EventTick(plan, notices, receive_calls, delete_calls, delete_failures, sweep)
