"""Questions asked of the warehouse before a weekly model is built: have its inputs landed?

Each returns a list of human-readable problems, empty when the inputs are complete.
"""

import datetime as dt

from churn_platform.resources.warehouse import table_exists
from churn_platform.windows import days


def days_not_ingested(con, first: dt.date, last: dt.date) -> list[str]:
    """Days of [first, last] that raw_events has not loaded."""
    loaded = set()
    if table_exists(con, "ingested_days"):
        loaded = {
            row[0]
            for row in con.execute(
                "SELECT event_date FROM ingested_days WHERE event_date BETWEEN ? AND ?", [first, last]
            ).fetchall()
        }
    missing = [d for d in days(first, last) if d not in loaded]
    return [f"raw_events not ingested for {len(missing)} day(s): {_span(missing)}"] if missing else []


def days_missing_activity(con, first: dt.date, last: dt.date) -> list[str]:
    """Ingested days with events that user_daily_activity has not aggregated.

    Two small questions, not an anti-join: on Spark the join of the ledger against every
    activity row of the window ran a million users' 91 days out of memory."""
    if not table_exists(con, "user_daily_activity"):
        missing = days(first, last)
    else:
        ingested = con.execute(
            "SELECT event_date FROM ingested_days WHERE event_date BETWEEN ? AND ? AND rows > 0 ORDER BY 1",
            [first, last],
        ).fetchall()
        built = {
            row[0]
            for row in con.execute(
                "SELECT DISTINCT activity_date FROM user_daily_activity WHERE activity_date BETWEEN ? AND ?",
                [first, last],
            ).fetchall()
        }
        missing = [row[0] for row in ingested if row[0] not in built]
    return [f"user_daily_activity not built for {len(missing)} day(s): {_span(missing)}"] if missing else []


def feature_dates_missing(con, first: dt.date, last: dt.date) -> list[str]:
    """Weekly as-of dates in [first, last] without user_features rows."""
    wanted = days(first, last)[::7]
    present = set()
    if table_exists(con, "user_features"):
        present = {
            row[0]
            for row in con.execute(
                "SELECT DISTINCT as_of_date FROM user_features WHERE as_of_date BETWEEN ? AND ?",
                [first, last],
            ).fetchall()
        }
    missing = [d for d in wanted if d not in present]
    return [f"user_features not materialized for as-of {_span(missing)}"] if missing else []


def _span(days: list[dt.date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:5])
    return shown + (f", ... ({len(days)} in all)" if len(days) > 5 else "")
