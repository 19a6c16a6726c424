"""user_daily_activity: one row per user and UTC day with events, aggregated from raw_events.

One SELECT for both engines (only the latest-value aggregate is spelled differently), run by
the ingest group's second asset (assets/daily_activity.py). It left dbt because at 100k users
dbt's one statement over 126 days (23M rows, 6.6M groups) spilled past DuckDB's 1 GB cap and
took 12-15 s plus ~3 s of dbt and its tests; in day batches of ~2M raw rows, each in its own
transaction, the same aggregate takes ~9 s. The weekly dbt models read it as a source.

Counts are integers; session seconds are summed as a fixed-point numeric (6 decimals) so a
rebuild gives the same double whatever order a parallel aggregate sees the rows in (ingest
keeps values within its range: MAX_SESSION_SECONDS in events.py). The day's plan_tier is the
one of its latest event, ties broken by the greatest event_id (docs/contract.md §3).
"""

from __future__ import annotations

import datetime as dt

from churn_platform.constants import USER_DAILY_ACTIVITY

ACTIVITY_DATE = "activity_date"

SCHEMA: dict[str, str] = {
    ACTIVITY_DATE: "DATE",
    "user_id": "BIGINT",
    "logins": "INTEGER",
    "sessions": "INTEGER",
    "session_seconds_sum": "DOUBLE",
    "payment_attempts": "INTEGER",
    "payment_failures": "INTEGER",
    "support_tickets": "INTEGER",
    "cancels": "INTEGER",
    "last_event_ts": "TIMESTAMP",
    "plan_tier": "VARCHAR",
}

# Every valid event is one of these counts: their sum over a day is the day's raw_events rows.
EVENT_COUNTS = ("logins", "sessions", "payment_attempts", "support_tickets", "cancels")

_LATEST_PLAN = {
    "duckdb": "arg_max(plan_tier, struct_pack(k1 := event_ts, k2 := event_id))",
    "spark": "max_by(plan_tier, struct(event_ts, event_id))",
}


def day_list(days: list[dt.date]) -> str:
    return ", ".join(f"DATE '{day.isoformat()}'" for day in days)


def aggregate_sql(engine: str, days: list[dt.date], columns: list[str] | None = None) -> str:
    """The aggregate of `days` from raw_events, its columns in `columns` order (default SCHEMA's)."""
    expressions = {
        ACTIVITY_DATE: "event_date",
        "user_id": "CAST(user_id AS BIGINT)",
        "logins": "CAST(sum(CASE WHEN event_type = 'login' THEN 1 ELSE 0 END) AS INTEGER)",
        "sessions": "CAST(sum(CASE WHEN event_type = 'session' THEN 1 ELSE 0 END) AS INTEGER)",
        "session_seconds_sum": "CAST(sum(CAST(CASE WHEN event_type = 'session' THEN session_seconds ELSE 0 END"
                               " AS DECIMAL(28, 6))) AS DOUBLE)",
        "payment_attempts": "CAST(sum(CASE WHEN event_type = 'payment' THEN 1 ELSE 0 END) AS INTEGER)",
        "payment_failures": "CAST(sum(CASE WHEN event_type = 'payment' AND payment_status = 'failed'"
                            " THEN 1 ELSE 0 END) AS INTEGER)",
        "support_tickets": "CAST(sum(CASE WHEN event_type = 'support_ticket' THEN 1 ELSE 0 END) AS INTEGER)",
        "cancels": "CAST(sum(CASE WHEN event_type = 'cancel' THEN 1 ELSE 0 END) AS INTEGER)",
        "last_event_ts": "max(event_ts)",
        "plan_tier": _LATEST_PLAN[engine],
    }
    select = ",\n    ".join(f"{expressions[c]} AS {c}" for c in columns or SCHEMA)
    return (f"SELECT\n    {select}\nFROM raw_events\nWHERE event_date IN ({day_list(days)})\n"
            f"GROUP BY event_date, user_id")


def counts_by_day_sql(days: list[dt.date]) -> str:
    """Per day: user rows, and events counted (to compare with the day's raw_events rows)."""
    return (f"SELECT {ACTIVITY_DATE}, count(*), sum({' + '.join(EVENT_COUNTS)}) FROM {USER_DAILY_ACTIVITY} "
            f"WHERE {ACTIVITY_DATE} IN ({day_list(days)}) GROUP BY {ACTIVITY_DATE}")


DUCKDB_DDL = (f"CREATE TABLE IF NOT EXISTS {USER_DAILY_ACTIVITY} (\n    "
              + ",\n    ".join(f"{c} {t} NOT NULL" if c != "plan_tier" else f"{c} {t}" for c, t in SCHEMA.items())
              + "\n)")


def replace_days_on_duckdb(con, days: list[dt.date]) -> None:
    """Replace the aggregate of `days` in one transaction: every day of them, or none."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {USER_DAILY_ACTIVITY} WHERE {ACTIVITY_DATE} IN ({day_list(days)})")
        con.execute(f"INSERT INTO {USER_DAILY_ACTIVITY} ({', '.join(SCHEMA)}) {aggregate_sql('duckdb', days)}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def replace_days_on_spark(con, days: list[dt.date]) -> None:
    """Overwrite the partitions of `days` (dynamic overwrite: only those the statement writes),
    then drop those of days left without activity, as the ingest does for raw_events."""
    columns = [c for c in SCHEMA if c != ACTIVITY_DATE] + [ACTIVITY_DATE]  # Spark keeps the partition last
    with_events = {row[0] for row in con.execute(
        f"SELECT DISTINCT event_date FROM raw_events WHERE event_date IN ({day_list(days)})"
    ).fetchall()}
    con.execute(f"INSERT OVERWRITE TABLE {USER_DAILY_ACTIVITY} PARTITION ({ACTIVITY_DATE}) "
                f"{aggregate_sql('spark', days, columns)}")
    for day in days:
        if day not in with_events:
            con.execute(f"ALTER TABLE {USER_DAILY_ACTIVITY} DROP IF EXISTS PARTITION ({ACTIVITY_DATE} = DATE '{day}')")
