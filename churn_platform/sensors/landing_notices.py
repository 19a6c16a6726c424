"""S3 event notifications as the landing sensor reads them: which keys changed, what was skipped.

A notification only says "look at this key": the sensor then lists the key's date and requests
it by the digest of that listing, exactly as the listing sweep would, so a duplicate or late
notification can never launch a second run. Keys arrive URL-encoded (spaces as `+`). S3 sends
one `s3:TestEvent` when the notification is configured; an SNS-wrapped notification (S3 → SNS →
SQS fan-out) is unwrapped. Anything else is reported and deleted: a message that can never be
read would otherwise come back forever, and the sweep still finds any file it named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from churn_platform.resources.landing_queue import QueueMessage

TEST_EVENT = "s3:TestEvent"
CHANGE_EVENTS = ("ObjectCreated:", "ObjectRemoved:")  # a removal changes the date's listing too
_REPORTED = 10  # rejected messages named in a tick's report; the rest are counted


@dataclass(frozen=True)
class Notices:
    """What one batch of messages said."""

    keys: list[str] = field(default_factory=list)  # decoded keys of the landing bucket, in order
    messages: int = 0
    test_events: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (message id, why)

    def report(self) -> str:
        parts = [f"{self.messages} message(s) naming {len(self.keys)} key(s)"]
        if self.test_events:
            parts.append(f"{self.test_events} test event(s)")
        if self.rejected:
            named = ", ".join(f"{mid} ({why})" for mid, why in self.rejected[:_REPORTED])
            more = len(self.rejected) - _REPORTED
            parts.append(f"{len(self.rejected)} unreadable: {named}" + (f" and {more} more" if more > 0 else ""))
        return ", ".join(parts)


class Unreadable(ValueError):
    """A message that is not an S3 notification of the landing bucket."""


def read_notices(messages: Iterable[QueueMessage], bucket: str) -> Notices:
    keys: list[str] = []
    tests = 0
    count = 0
    rejected: list[tuple[str, str]] = []
    for message in messages:
        count += 1
        try:
            found = notified_keys(message.body, bucket)
        except Unreadable as err:
            rejected.append((message.message_id, str(err)))
            continue
        if found is None:
            tests += 1
        else:
            keys += found
    return Notices(keys=keys, messages=count, test_events=tests, rejected=rejected)


def notified_keys(body: str, bucket: str) -> list[str] | None:
    """The decoded keys a notification names; None for S3's test event; Unreadable otherwise."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
            data = json.loads(data["Message"])
    except (json.JSONDecodeError, TypeError) as err:
        raise Unreadable(f"not JSON: {err}") from err
    if not isinstance(data, dict):
        raise Unreadable("not an S3 notification")
    if data.get("Event") == TEST_EVENT:
        return None
    records = data.get("Records")
    if not isinstance(records, list) or not records:
        raise Unreadable("no Records")
    return [_record_key(record, bucket) for record in records]


def _record_key(record, bucket: str) -> str:
    try:
        event, s3 = record["eventName"], record["s3"]
        source, raw_key = s3["bucket"]["name"], s3["object"]["key"]
    except (KeyError, TypeError) as err:
        raise Unreadable(f"a record without {err}") from err
    if not isinstance(event, str) or not event.startswith(CHANGE_EVENTS):
        raise Unreadable(f"event {event!r} is not an object change")
    if source != bucket:
        raise Unreadable(f"bucket {source!r} is not the landing bucket {bucket!r}")
    if not isinstance(raw_key, str):
        raise Unreadable("a key that is not text")
    return unquote_plus(raw_key)
