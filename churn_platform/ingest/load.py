"""Load one day of landed files into the warehouse, atomically.

Row-level rules are SQL (`rules.py`, shared with the Spark engine) so every rejected row is
counted by reason and kept in `raw_events_rejected` (nothing is silently dropped). A day's rows are replaced in one
transaction: a rerun or a re-landed file never doubles or half-writes a partition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from churn_platform.ingest.rules import DEDUPE_ORDER, reason_expression
from churn_platform.ingest.validation import LandedFile


def _insert_valid_rows(deduplicate: bool) -> str:
    """Valid rows, one per event_id (the first in DEDUPE_ORDER when an event landed twice)."""
    insert = f"""
        INSERT INTO raw_events
        SELECT $day, event_id, user_id, event_type, event_ts, plan_tier,
               session_seconds, payment_status, source_key
        FROM landed WHERE ({reason_expression('$day')}) IS NULL
    """
    if not deduplicate:
        return insert
    return insert + f" QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY {DEDUPE_ORDER}) = 1"


_INSERT_REJECTED = f"""
    INSERT INTO raw_events_rejected
    SELECT $day, reason, event_id, user_id, event_type, event_ts, plan_tier,
           session_seconds, payment_status, source_key
    FROM (SELECT *, {reason_expression('$day')} AS reason FROM landed)
    WHERE reason IS NOT NULL
"""


def _has_duplicates(landed: pa.Table) -> bool:
    """Whether any event_id repeats among the day's rows (valid or not): counted in arrow, a
    hash pass over one column; most days have none, and then the dedupe window is skipped."""
    return pc.count_distinct(landed.column("event_id"), mode="all").as_py() != landed.num_rows


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
    """Replace the warehouse rows of `day` with the valid, deduplicated rows of `files`.

    The landed rows are read where they are (arrow), once for the valid rows and once for
    the rejected ones; the counts come from the inserts, not from queries over what they wrote.
    """
    if not files:
        raise ValueError(f"no files to load for {day}")
    landed = pa.concat_tables([f.table for f in files])
    con.register("landed", landed)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM raw_events WHERE event_date = $day", {"day": day})
        con.execute("DELETE FROM raw_events_rejected WHERE event_date = $day", {"day": day})
        [(loaded,)] = con.execute(_insert_valid_rows(_has_duplicates(landed)), {"day": day}).fetchall()
        [(rejected_rows,)] = con.execute(_INSERT_REJECTED, {"day": day}).fetchall()
        rejected = dict(con.execute(
            "SELECT reason, count(*) FROM raw_events_rejected WHERE event_date = $day GROUP BY reason",
            {"day": day},
        ).fetchall()) if rejected_rows else {}
        con.execute(
            "INSERT OR REPLACE INTO ingested_days VALUES ($day, $files, $rows, now()::TIMESTAMP)",
            {"day": day, "files": len(files), "rows": loaded},
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("landed")
    return DayIngest(
        day=day,
        files=len(files),
        rows_in=landed.num_rows,
        rows_loaded=loaded,
        duplicates_removed=landed.num_rows - rejected_rows - loaded,
        rejected_by_reason=rejected,
        extra_columns={f.key: list(f.extra_columns) for f in files if f.extra_columns},
    )
