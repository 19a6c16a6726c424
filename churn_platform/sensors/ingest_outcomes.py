"""What became of the ingest runs the landing sensor launched, and what it does next.

A run can end with some days loaded and others not. For each finished run the sensor asks:
- days whose files are bad input (unreadable, wrong schema, empty) wait for new or changed
  files: the listing requests them again when their digest changes;
- days that failed for any other reason (S3, DuckDB, a killed worker, the runtime cap) are
  requested again with exponential backoff, a bounded number of times;
- days whose raw_events committed but whose daily aggregate was not built (a range run that
  failed on a neighbour) get an aggregate-only run at once.
Everything pending is kept in the sensor cursor and named in each tick's message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
INGEST, AGGREGATE = "ingest", "aggregate"


@dataclass(frozen=True)
class RetryLimits:
    """A transient failure is retried after base, 2x base, 4x base ... seconds, max_attempts times."""

    max_attempts: int = 4
    base_delay_seconds: float = 60.0

    def delay(self, attempt: int) -> float:
        return self.base_delay_seconds * 2 ** (attempt - 1)


@dataclass(frozen=True)
class RunOutcome:
    """One finished run the sensor launched: which of its days loaded, aggregated or failed how."""

    run_id: str
    days: tuple[str, ...]
    succeeded: bool
    ingests: bool  # False for an aggregate-only run
    loaded: frozenset[str]
    aggregated: frozenset[str]
    bad_input: dict[str, str]  # day -> why (the key and the problem)
    retryable: dict[str, str]  # day -> why, when the run said; other missing days get `failure`
    failure: str  # the run's own error, for days it did not explain


@dataclass(frozen=True)
class Retry:
    kind: str  # INGEST or AGGREGATE
    attempt: int  # attempts made so far
    not_before: float | None  # epoch seconds; None while the retry's run is in flight
    reason: str


@dataclass(frozen=True)
class Pending:
    """The sensor's memory of unfinished days (part of its cursor)."""

    retries: dict[str, Retry] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)  # day -> bad-input reason
    gave_up: dict[str, str] = field(default_factory=dict)  # day -> last reason, attempts exhausted

    def to_json(self) -> dict:
        return {
            "retries": {d: [r.kind, r.attempt, r.not_before, r.reason] for d, r in sorted(self.retries.items())},
            "waiting": dict(sorted(self.waiting.items())),
            "gave_up": dict(sorted(self.gave_up.items())),
        }

    @classmethod
    def from_json(cls, raw: dict | None) -> Pending:
        if not raw:
            return cls()
        return cls(
            retries={d: Retry(k, int(a), None if t is None else float(t), r)
                     for d, (k, a, t, r) in raw["retries"].items()},
            waiting=dict(raw["waiting"]),
            gave_up=dict(raw["gave_up"]),
        )

    def forget(self, days) -> Pending:
        """New or changed files supersede whatever was pending for these days."""
        days = set(days)
        return Pending(
            retries={d: r for d, r in self.retries.items() if d not in days},
            waiting={d: w for d, w in self.waiting.items() if d not in days},
            gave_up={d: g for d, g in self.gave_up.items() if d not in days},
        )


@dataclass(frozen=True)
class Followups:
    ingest_days: list[tuple[str, int]]  # (day, attempt number) to ingest again now
    aggregate_days: list[str]  # days to aggregate now
    pending: Pending

    def report(self, now: float) -> str:
        parts = []
        if self.ingest_days:
            parts.append(f"retrying ingest of {[d for d, _ in self.ingest_days]}")
        if self.aggregate_days:
            parts.append(f"aggregating {self.aggregate_days} (their raw_events loaded in a failed run)")
        for day, retry in sorted(self.pending.retries.items()):
            if retry.not_before is None:
                parts.append(f"{day}: {retry.kind} retry {retry.attempt} running ({retry.reason})")
            else:
                wait = max(0, round(retry.not_before - now))
                parts.append(f"{day}: {retry.kind} retry {retry.attempt + 1} in {wait} s ({retry.reason})")
        for day, why in sorted(self.pending.waiting.items()):
            parts.append(f"{day}: waiting for new or changed files ({why})")
        for day, why in sorted(self.pending.gave_up.items()):
            parts.append(f"{day}: gave up after the last retry; land the files again or rerun ({why})")
        return "; ".join(parts)


def run_days(tags: dict[str, str]) -> tuple[str, ...]:
    """The daily partitions a run covered, from its tags."""
    if PARTITION_TAG in tags:
        return (tags[PARTITION_TAG],)
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first = dt.date.fromisoformat(tags[RANGE_START_TAG])
        last = dt.date.fromisoformat(tags[RANGE_END_TAG])
        return tuple((first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1))
    return ()


def plan_followups(outcomes: list[RunOutcome], pending: Pending, now: float,
                   limits: RetryLimits = RetryLimits()) -> Followups:
    """Fold finished runs into the pending state; return what is due now."""
    retries, waiting, gave_up = dict(pending.retries), dict(pending.waiting), dict(pending.gave_up)
    aggregate_now: set[str] = set()

    def schedule(day: str, kind: str, reason: str) -> None:
        attempt = retries[day].attempt if day in retries and retries[day].kind == kind else 0
        if attempt >= limits.max_attempts:
            retries.pop(day, None)
            gave_up[day] = reason
            return
        retries[day] = Retry(kind, attempt, now + limits.delay(attempt + 1), reason)

    for outcome in outcomes:
        for day in outcome.days:
            if outcome.succeeded:
                retries.pop(day, None)
                waiting.pop(day, None)
                gave_up.pop(day, None)
            elif outcome.ingests and day not in outcome.loaded:
                if day in outcome.bad_input:
                    retries.pop(day, None)
                    waiting[day] = outcome.bad_input[day]
                else:
                    schedule(day, INGEST, outcome.retryable.get(day, outcome.failure))
            elif day not in outcome.aggregated:
                waiting.pop(day, None)
                if outcome.ingests:
                    retries.pop(day, None)
                    aggregate_now.add(day)  # first attempt: no reason to wait
                else:
                    schedule(day, AGGREGATE, outcome.failure)
            else:  # a failed run that still loaded and aggregated this day
                retries.pop(day, None)
                waiting.pop(day, None)
                gave_up.pop(day, None)

    due_ingest, due_aggregate = [], sorted(aggregate_now)
    for day, retry in list(retries.items()):
        if retry.not_before is not None and retry.not_before <= now:
            if retry.kind == INGEST:
                due_ingest.append((day, retry.attempt + 1))
            else:
                due_aggregate.append(day)
            retries[day] = replace(retry, attempt=retry.attempt + 1, not_before=None)
    return Followups(
        ingest_days=sorted(due_ingest),
        aggregate_days=sorted(set(due_aggregate)),
        pending=Pending(retries=retries, waiting=waiting, gave_up=gave_up),
    )
