"""Load landed days into the warehouse: each day whole, several days per transaction.

Row-level rules are SQL (`rules.py`, shared with the Spark engine) so every rejected row is
counted by reason and kept in `raw_events_rejected` (nothing is silently dropped). A day's rows
are replaced inside one transaction: a rerun or a re-landed file never doubles or half-writes a
partition. Several days go in one transaction because DuckDB's per-insert cost is fixed: at
100k users, 126 one-day inserts took 15.8 s and 13 ten-day inserts of the same rows 8.9 s. The
orchestrator batches days up to CHURN_INGEST_BATCH_ROWS landed rows (default 2M, ~250 MB held
in memory); a day larger than that is a batch of its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from churn_platform.ingest.rules import DEDUPE_ORDER, reason_expression
from churn_platform.ingest.validation import LANDED_DAY, LandedDay, LandedFile


def _insert_valid_rows(deduplicate: bool) -> str:
    """Valid rows, one per event_id and day (the first in DEDUPE_ORDER when an event landed twice)."""
    insert = f"""
        INSERT INTO raw_events
        SELECT {LANDED_DAY}, event_id, user_id, event_type, event_ts, plan_tier,
               session_seconds, payment_status, source_key
        FROM landed WHERE ({reason_expression(LANDED_DAY)}) IS NULL
    """
    if not deduplicate:
        return insert
    return insert + f" QUALIFY row_number() OVER (PARTITION BY {LANDED_DAY}, event_id ORDER BY {DEDUPE_ORDER}) = 1"


_INSERT_REJECTED = f"""
    INSERT INTO raw_events_rejected
    SELECT {LANDED_DAY}, reason, event_id, user_id, event_type, event_ts, plan_tier,
           session_seconds, payment_status, source_key
    FROM (SELECT *, {reason_expression(LANDED_DAY)} AS reason FROM landed)
    WHERE reason IS NOT NULL
"""
_IN_BATCH = "event_date IN (SELECT UNNEST($days))"


def _has_duplicates(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an event_id repeats within a day of the batch (valid rows or not). Most batches
    have none, and then the insert skips the dedupe window (0.3 s + 0.3 s against 0.9 s for 2M
    rows; arrow's count_distinct over the batch's chunks took 1 s)."""
    [(repeats,)] = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM landed GROUP BY {LANDED_DAY}, event_id HAVING count(*) > 1)"
    ).fetchall()
    return repeats


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


def load_days(con: duckdb.DuckDBPyConnection, batch: list[LandedDay]) -> list[DayIngest]:
    """Replace the warehouse rows of every day in `batch` with the valid, deduplicated rows of
    its files, all in one transaction (every day of the batch, or none of them).

    The landed rows are read where they are (arrow), once for the valid rows and once for
    the rejected ones; the per-day counts come from what the inserts wrote.
    """
    if not batch or any(not d.files for d in batch):
        raise ValueError(f"no files to load for {[d.day for d in batch if not d.files] or 'an empty batch'}")
    days = [d.day for d in batch]
    landed = pa.concat_tables([d.table() for d in batch])
    con.register("landed", landed)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM raw_events WHERE {_IN_BATCH}", {"days": days})
        con.execute(f"DELETE FROM raw_events_rejected WHERE {_IN_BATCH}", {"days": days})
        con.execute(_insert_valid_rows(_has_duplicates(con)))
        [(rejected_rows,)] = con.execute(_INSERT_REJECTED).fetchall()
        loaded = dict(con.execute(
            f"SELECT event_date, count(*) FROM raw_events WHERE {_IN_BATCH} GROUP BY event_date", {"days": days},
        ).fetchall())
        rejected: dict[dt.date, dict[str, int]] = {}
        if rejected_rows:
            for day, reason, n in con.execute(
                f"SELECT event_date, reason, count(*) FROM raw_events_rejected WHERE {_IN_BATCH} GROUP BY ALL",
                {"days": days},
            ).fetchall():
                rejected.setdefault(day, {})[reason] = n
        for d in batch:
            con.execute(
                "INSERT OR REPLACE INTO ingested_days VALUES ($day, $files, $rows, now()::TIMESTAMP)",
                {"day": d.day, "files": len(d.files), "rows": loaded.get(d.day, 0)},
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("landed")
    results = []
    for d in batch:
        by_reason = rejected.get(d.day, {})
        results.append(DayIngest(
            day=d.day,
            files=len(d.files),
            rows_in=d.rows,
            rows_loaded=loaded.get(d.day, 0),
            duplicates_removed=d.rows - sum(by_reason.values()) - loaded.get(d.day, 0),
            rejected_by_reason=dict(sorted(by_reason.items())),
            extra_columns={f.key: list(f.extra_columns) for f in d.files if f.extra_columns},
        ))
    return results


def load_day(con: duckdb.DuckDBPyConnection, day: dt.date, files: list[LandedFile]) -> DayIngest:
    """One day in its own transaction."""
    [result] = load_days(con, [LandedDay(day, files)])
    return result
