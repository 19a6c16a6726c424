"""Load one day of landed files into the warehouse, atomically.

Row-level rules are SQL so every rejected row is counted by reason and kept in
`raw_events_rejected` (nothing is silently dropped). A day's rows are replaced in one
transaction: a rerun or a re-landed file never doubles or half-writes a partition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from churn_platform.events import EVENT_TYPES, MAX_SESSION_SECONDS, PAYMENT_STATUSES, PLAN_TIERS
from churn_platform.ingest.validation import LandedFile


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# First matching rule wins; a row with no reason is loaded.
REJECTION_RULES: tuple[tuple[str, str], ...] = (
    ("null_event_id", "event_id IS NULL OR event_id = ''"),
    ("null_user_id", "user_id IS NULL"),
    ("null_event_type", "event_type IS NULL"),
    ("unknown_event_type", f"event_type NOT IN ({_sql_list(EVENT_TYPES)})"),
    ("null_event_ts", "event_ts IS NULL"),
    ("wrong_date", "CAST(event_ts AS DATE) <> $day"),
    # Every event carries the user's plan at that moment; features need the latest one.
    ("null_plan_tier", "plan_tier IS NULL"),
    ("unknown_plan_tier", f"plan_tier NOT IN ({_sql_list(PLAN_TIERS)})"),
    (
        "session_without_seconds",
        "event_type = 'session' AND (session_seconds IS NULL OR session_seconds < 0"
        f" OR isnan(session_seconds) OR NOT session_seconds < {MAX_SESSION_SECONDS:.0f})",
    ),
    (
        "payment_without_status",
        f"event_type = 'payment' AND (payment_status IS NULL"
        f" OR payment_status NOT IN ({_sql_list(PAYMENT_STATUSES)}))",
    ),
    ("seconds_on_non_session", "event_type <> 'session' AND session_seconds IS NOT NULL"),
    ("status_on_non_payment", "event_type <> 'payment' AND payment_status IS NOT NULL"),
)


def _reason_expression() -> str:
    cases = " ".join(f"WHEN {condition} THEN '{reason}'" for reason, condition in REJECTION_RULES)
    return f"CASE {cases} ELSE NULL END"


_INSERT_VALID = """
    INSERT INTO raw_events
    SELECT $day, event_id, user_id, event_type, event_ts, plan_tier,
           session_seconds, payment_status, source_key
    FROM classified WHERE reason IS NULL
"""


def _has_duplicates(con: duckdb.DuckDBPyConnection) -> bool:
    """A hash count is ~5x cheaper than the dedupe window; most days have no duplicates."""
    total, distinct = con.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM classified WHERE reason IS NULL"
    ).fetchone()
    return total != distinct


def _insert_valid_rows(deduplicate: bool) -> str:
    """Valid rows, one per event_id (the first by source key when an event landed twice)."""
    if not deduplicate:
        return _INSERT_VALID
    return _INSERT_VALID + (
        " QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_key, event_ts) = 1"
    )


@dataclass
class DayIngest:
    """What one day's load did, for metadata and checks."""

    day: dt.date
    files: int
    rows_in: int
    rows_loaded: int
    duplicates_removed: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    extra_columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


def load_day(con: duckdb.DuckDBPyConnection, day: dt.date, files: list[LandedFile]) -> DayIngest:
    """Replace the warehouse rows of `day` with the valid, deduplicated rows of `files`."""
    if not files:
        raise ValueError(f"no files to load for {day}")
    con.register("landed", pa.concat_tables([f.table for f in files]))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE classified AS "
            f"SELECT *, {_reason_expression()} AS reason FROM landed",
            {"day": day},
        )
        con.execute("DELETE FROM raw_events WHERE event_date = $day", {"day": day})
        con.execute("DELETE FROM raw_events_rejected WHERE event_date = $day", {"day": day})
        con.execute(_insert_valid_rows(_has_duplicates(con)), {"day": day})
        con.execute(
            """
            INSERT INTO raw_events_rejected
            SELECT $day, reason, event_id, user_id, event_type, event_ts, plan_tier,
                   session_seconds, payment_status, source_key
            FROM classified WHERE reason IS NOT NULL
            """,
            {"day": day},
        )
        rows_in, valid = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE reason IS NULL) FROM classified"
        ).fetchone()
        loaded = con.execute(
            "SELECT count(*) FROM raw_events WHERE event_date = $day", {"day": day}
        ).fetchone()[0]
        rejected = dict(
            con.execute(
                "SELECT reason, count(*) FROM classified WHERE reason IS NOT NULL GROUP BY reason"
            ).fetchall()
        )
        con.execute(
            "INSERT OR REPLACE INTO ingested_days VALUES ($day, $files, $rows, now()::TIMESTAMP)",
            {"day": day, "files": len(files), "rows": loaded},
        )
        con.execute("DROP TABLE classified")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("landed")
    return DayIngest(
        day=day,
        files=len(files),
        rows_in=rows_in,
        rows_loaded=loaded,
        duplicates_removed=valid - loaded,
        rejected_by_reason=rejected,
        extra_columns={f.key: list(f.extra_columns) for f in files if f.extra_columns},
    )
