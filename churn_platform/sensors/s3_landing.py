"""The landing sensor's listing planner: which dates' landed files changed, and the cursor.

What the cursor compares. S3 lists in key order only, so finding a late file for an old date
needs a listing of the whole prefix whatever the cursor holds. Given that listing, the cursor
keeps per date a 64-bit digest of the set of (key, ETag) of its landed files as last requested,
rather than a (LastModified, key) watermark: a new, late or rewritten file changes the digest,
whereas a watermark misses a multipart upload that completes after the watermark moved (its
LastModified is when the upload began) and a rewrite within the same second. A deleted file
changes the digest too, so the rerun makes the warehouse match the landing zone. About 32 bytes
per date.

How a tick stays bounded. Two resumable scans share a budget of ListObjectsV2 calls:
- hot: the last `hot_days` partitions (up to yesterday), where files usually land; usually one
  call, so a new file is requested on the next tick;
- rolling: the whole `events/raw/` prefix from a saved StartAfter, wrapping at the end, which
  finds late files for old dates within ceil(pages / rolling calls per tick) + 1 ticks.
A date cut by the budget carries its partial digest in the cursor and is finished next tick. A
changed date that would exceed `max_run_requests` sends its scan back before that date, so the
cursor never moves past anything not yet requested.

Run keys are `<date>:<digest>`: several new files for one date in one tick make one request,
and the same objects never launch a second run, even after a cursor reset (Dagster skips run
keys it has launched before).

Keys outside the layout and dates before the start date are skipped and reported. Dates that are
not partitions yet (today and later, UTC) are deferred: nothing about them enters the cursor, so
the hot scan requests them once they become yesterday.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

from churn_platform.events import LANDING_PREFIX, day_prefix, parse_landing_key
from churn_platform.sensors.ingest_outcomes import Pending
from churn_platform.sensors.ingest_runs import RunReview

LANDING_SENSOR = "s3_landing_sensor"
CURSOR_VERSION = 3  # 2 added what is pending after failed runs, 3 the queue; older cursors still read
_DIGEST_MODULUS = 2**64
_REPORTED_KEYS = 10  # skipped keys named in a tick's report; the rest are counted

OUTSIDE_LAYOUT = "outside events/raw/date=YYYY-MM-DD/<name>.parquet"
NOT_A_DATE = "not a calendar date"
BEFORE_START = "before the first partition"


@dataclass(frozen=True)
class TickLimits:
    """Work one tick may do. The defaults list 20k keys and request 200 dates at most: consecutive
    dates coalesce into one range run, so a first start over months of history is one run."""

    max_list_calls: int = 20  # ListObjectsV2 calls; the hot scan may use half of them
    max_run_requests: int = 200  # dates requested per tick
    page_size: int = 1000  # keys per call (S3 returns at most 1000)
    hot_days: int = 3

    def __post_init__(self):
        # Both scans need a call, and the rolling scan a run request, for every tick to progress.
        if self.max_list_calls < 2:
            raise ValueError("max_list_calls must be at least 2 (hot and rolling scan)")
        if not 1 <= self.hot_days < self.max_run_requests:
            raise ValueError("hot_days must be at least 1 and below max_run_requests")
        if not 1 <= self.page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")


@dataclass(frozen=True)
class PartialDate:
    """A date whose listing the page budget cut: the digest of its keys listed so far."""

    day: str
    digest: int


@dataclass(frozen=True)
class ScanState:
    """Where a scan resumes: the StartAfter of its next call and the date it is in the middle of."""

    after: str = ""
    partial: PartialDate | None = None

    def to_json(self) -> list:
        partial = [self.partial.day, f"{self.partial.digest:016x}"] if self.partial else None
        return [self.after, partial]

    @classmethod
    def from_json(cls, raw: list) -> ScanState:
        after, partial = raw
        return cls(after, PartialDate(partial[0], int(partial[1], 16)) if partial else None)


@dataclass(frozen=True)
class QueueState:
    """Event mode: messages to delete on the next tick, dates still to request, the last full sweep."""

    to_delete: tuple[str, ...] = ()  # receipt handles of the messages this tick read
    backlog: tuple[str, ...] = ()  # named dates the run quota had no room for
    swept_at: float = 0.0  # when the rolling sweep last wrapped (epoch seconds)

    def to_json(self) -> list:
        return [list(self.to_delete), list(self.backlog), self.swept_at]

    @classmethod
    def from_json(cls, raw: list | None) -> QueueState:
        if not raw:
            return cls()
        to_delete, backlog, swept_at = raw
        return cls(tuple(to_delete), tuple(backlog), float(swept_at))


@dataclass(frozen=True)
class LandingCursor:
    """Per date, the digest of the listing last requested; plus where each scan resumes."""

    requested: dict[str, str] = field(default_factory=dict)
    hot: ScanState = ScanState()
    rolling: ScanState = ScanState()
    pending: Pending = Pending()
    reviewed: RunReview = RunReview()
    queue: QueueState = QueueState()

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "requested": dict(sorted(self.requested.items())),
                "hot": self.hot.to_json(),
                "rolling": self.rolling.to_json(),
                "pending": self.pending.to_json(),
                "reviewed": self.reviewed.to_json(),
                "queue": self.queue.to_json(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | None) -> LandingCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        if data.get("v") not in (1, 2, CURSOR_VERSION):
            raise ValueError(
                f"landing sensor cursor version {data.get('v')!r} is not {CURSOR_VERSION}; "
                "reset the sensor cursor (run keys keep already-launched runs from repeating)"
            )
        return cls(
            requested=data["requested"],
            hot=ScanState.from_json(data["hot"]),
            rolling=ScanState.from_json(data["rolling"]),
            pending=Pending.from_json(data.get("pending")),
            reviewed=RunReview.from_json(data.get("reviewed")),
            queue=QueueState.from_json(data.get("queue")),
        )


@dataclass(frozen=True)
class SkippedKey:
    key: str
    reason: str


@dataclass(frozen=True)
class TickPlan:
    run_requests: list[dg.RunRequest]
    new_cursor: LandingCursor
    skipped_keys: list[SkippedKey]
    deferred_dates: list[str]
    list_calls: int
    backlog: list[str] = field(default_factory=list)  # dates named by notices, left for the next tick
    sweep_wrapped: bool = False  # the rolling scan reached the end of the prefix this tick

    def report(self) -> str:
        """One line for the tick: what was requested, skipped and deferred."""
        parts = [
            f"{len(self.run_requests)} date(s) requested "
            f"{[r.partition_key for r in self.run_requests]}",
            f"{self.list_calls} list call(s)",
        ]
        if self.skipped_keys:
            named = ", ".join(f"{s.key} ({s.reason})" for s in self.skipped_keys[:_REPORTED_KEYS])
            more = len(self.skipped_keys) - _REPORTED_KEYS
            parts.append(
                f"{len(self.skipped_keys)} key(s) skipped: {named}"
                + (f" and {more} more" if more > 0 else "")
            )
        if self.deferred_dates:
            parts.append(f"deferred until they are partitions: {self.deferred_dates}")
        if self.backlog:
            parts.append(f"{len(self.backlog)} notified date(s) left for the next tick (run quota)")
        return "; ".join(parts)


def _before(day: str) -> str:
    """A StartAfter that sorts just before every key of `day`."""
    return day_prefix(day).rstrip("/")


def _object_digest(key: str, etag: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\n{etag}".encode(), digest_size=8).digest(), "big")


class _Tick:
    """The decisions of one tick, shared by both scans."""

    def __init__(self, client, bucket: str, cursor: LandingCursor, today: dt.date,
                 start_date: dt.date, limits: TickLimits):
        self.client = client
        self.bucket = bucket
        self.today = today
        self.start_date = start_date
        self.limits = limits
        self.requested = dict(cursor.requested)
        self.run_requests: list[dg.RunRequest] = []
        self.skipped: dict[str, str] = {}
        self.deferred: set[str] = set()
        self.list_calls = 0

    def scan(self, state: ScanState, lower: str, upper: str | None, budget: int) -> ScanState:
        """Continue a scan of the keys in (lower, upper) for at most `budget` calls.

        Returns where to resume: `lower` once the range is done, else the last key listed
        (with the date cut there) or the start of a changed date the run quota had no room for.
        """
        after, partial = state.after, state.partial
        for _ in range(budget):
            page = self._list_page(after)
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if upper is not None and key >= upper:
                    return self._close(partial, lower)
                day = self._partition_day(key)
                if day is not None:
                    if partial is not None and partial.day != day:
                        if not self._offer(partial):
                            return ScanState(_before(partial.day))
                        partial = None
                    so_far = partial.digest if partial else 0
                    digest = (so_far + _object_digest(key, obj["ETag"])) % _DIGEST_MODULUS
                    partial = PartialDate(day, digest)
                after = key
            if not page.get("IsTruncated"):
                return self._close(partial, lower)
        return ScanState(after, partial)

    def request_days(self, days: set[str]) -> list[str]:
        """Event mode: list each notified date alone and offer it; returns those the quota left."""
        left = []
        for day in sorted(days):
            if len(self.run_requests) >= self.limits.max_run_requests:
                left.append(day)
                continue
            self._offer(self._list_day(day))
        return left

    def _list_day(self, day: str) -> PartialDate:
        """The digest of one date's listing, as the scans compute it (every page)."""
        digest, after = 0, ""
        while True:
            page = self._list_page(after, day_prefix(day))
            for obj in page.get("Contents", []):
                if self._partition_day(obj["Key"]) == day:
                    digest = (digest + _object_digest(obj["Key"], obj["ETag"])) % _DIGEST_MODULUS
                after = obj["Key"]
            if not page.get("IsTruncated"):
                return PartialDate(day, digest)

    def _list_page(self, after: str, prefix: str = LANDING_PREFIX) -> dict:
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": self.limits.page_size}
        if after:
            kwargs["StartAfter"] = after
        self.list_calls += 1
        return self.client.list_objects_v2(**kwargs)

    def _close(self, last: PartialDate | None, restart: str) -> ScanState:
        """The range ended: offer its last date, then start over at `restart` next time."""
        if last is not None and not self._offer(last):
            return ScanState(_before(last.day))
        return ScanState(restart)

    def _partition_day(self, key: str) -> str | None:
        """The partition a key belongs to, or None (recorded as skipped or deferred)."""
        raw = parse_landing_key(key)
        if raw is None:
            self.skipped[key] = OUTSIDE_LAYOUT
            return None
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            self.skipped[key] = NOT_A_DATE
            return None
        if day < self.start_date:
            self.skipped[key] = BEFORE_START
            return None
        if day >= self.today:
            self.deferred.add(raw)
            return None
        return raw

    def _is_partition(self, day: str) -> bool:
        """False only for a date carried over from a tick with another start date."""
        return self.start_date.isoformat() <= day < self.today.isoformat()

    def _offer(self, listing: PartialDate) -> bool:
        """Request a completely listed date if it changed; False when the run quota is spent."""
        digest = f"{listing.digest:016x}"
        if self.requested.get(listing.day) == digest or not self._is_partition(listing.day):
            return True
        if len(self.run_requests) >= self.limits.max_run_requests:
            return False
        self.run_requests.append(
            dg.RunRequest(run_key=f"{listing.day}:{digest}", partition_key=listing.day)
        )
        self.requested[listing.day] = digest
        return True


def _hot_range(today: dt.date, start_date: dt.date, hot_days: int) -> tuple[str, str] | None:
    """Key range of the last `hot_days` partitions, or None before the first partition exists."""
    first = max(start_date, today - dt.timedelta(days=hot_days))
    if first >= today:
        return None
    return _before(first.isoformat()), _before(today.isoformat())


def plan_tick(
    client,
    bucket: str,
    cursor: LandingCursor,
    today: dt.date,
    start_date: dt.date,
    limits: TickLimits = TickLimits(),
    notified_keys: list[str] | None = None,
    sweep: bool = True,
) -> TickPlan:
    """One sensor tick: list within `limits`, decide the run requests and the next cursor.

    `client` is a boto3 S3 client; `today` is the current UTC date (partitions end yesterday).
    In event mode, `notified_keys` (from the queue) and the dates carried in the cursor are
    listed one date each, first; `sweep` False leaves the rolling scan where it is.
    """
    tick = _Tick(client, bucket, cursor, today, start_date, limits)
    backlog: list[str] = []
    if notified_keys is not None:
        days = {day for key in notified_keys if (day := tick._partition_day(key)) is not None}
        days |= {day for day in cursor.queue.backlog if tick._is_partition(day)}
        backlog = tick.request_days(days)
    hot = ScanState()
    hot_range = _hot_range(today, start_date, limits.hot_days)
    if hot_range is not None:
        lower, upper = hot_range
        hot = cursor.hot if lower <= cursor.hot.after < upper else ScanState(lower)
        hot = tick.scan(hot, lower, upper, limits.max_list_calls // 2)
    rolling, wrapped = cursor.rolling, False
    budget = limits.max_list_calls - tick.list_calls
    if sweep and budget > 0:
        rolling = tick.scan(cursor.rolling, "", None, budget)
        wrapped = rolling == ScanState()
    return TickPlan(
        run_requests=tick.run_requests,
        new_cursor=LandingCursor(requested=tick.requested, hot=hot, rolling=rolling,
                                 pending=cursor.pending, reviewed=cursor.reviewed,
                                 queue=dataclasses.replace(cursor.queue, backlog=tuple(backlog))),
        skipped_keys=[SkippedKey(key, reason) for key, reason in sorted(tick.skipped.items())],
        deferred_dates=sorted(tick.deferred),
        list_calls=tick.list_calls,
        backlog=backlog,
        sweep_wrapped=wrapped,
    )
