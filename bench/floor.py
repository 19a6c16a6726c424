"""The floors: what plain DuckDB needs for the same work, with no platform around it.

Ingest floor: read every landed file and write it into a table. Features floor: one scan
of the same files computing the features at A and the labels at A - 28 with a single
set-based query (docs/contract.md §3 semantics). The generated files hold no duplicate
event_ids and no bad rows, so neither floor validates or deduplicates.
"""

from __future__ import annotations

import datetime as dt

INGEST_SQL = "CREATE TABLE events AS SELECT * FROM read_parquet($glob)"

# Features at $as_of (A) and labels at $label_as_of (L = A - 28) from one pass over the events.
FEATURES_LABELS_SQL = """
CREATE TABLE features_labels AS
WITH events AS (
    SELECT user_id, event_id, event_type, event_ts, CAST(event_ts AS DATE) AS event_date,
           plan_tier, session_seconds, payment_status
    FROM read_parquet($glob)
    WHERE CAST(event_ts AS DATE) <= $as_of
),
per_user AS (
    SELECT
        user_id,
        min(event_date) FILTER (WHERE event_type = 'cancel') AS first_cancel,
        count(*) FILTER (WHERE event_date >= $as_of - 89) AS events_90d,
        count(*) FILTER (WHERE event_date BETWEEN $label_as_of - 89 AND $label_as_of) AS label_events_90d,
        max(event_date) FILTER (WHERE event_type = 'login') AS last_login,
        count(*) FILTER (WHERE event_type = 'payment' AND event_date >= $as_of - 29) AS payment_attempts_30d,
        count(*) FILTER (WHERE event_type = 'payment' AND payment_status = 'failed'
                         AND event_date >= $as_of - 29) AS payment_failures_30d,
        avg(session_seconds) FILTER (WHERE event_type = 'session' AND event_date >= $as_of - 6) AS avg_session_7d,
        count(*) FILTER (WHERE event_type = 'support_ticket' AND event_date >= $as_of - 89) AS support_tickets_90d,
        arg_max(plan_tier, (event_ts, event_id)) AS plan_tier
    FROM events
    GROUP BY user_id
)
SELECT
    user_id,
    events_90d > 0 AND first_cancel IS NULL AS in_features,
    least(coalesce($as_of - last_login, 90), 90) AS days_since_last_login,
    payment_attempts_30d,
    payment_failures_30d,
    payment_failures_30d / greatest(payment_attempts_30d, 1) AS payment_failure_rate,
    coalesce(avg_session_7d, 0.0) AS avg_session_length_7d,
    support_tickets_90d,
    plan_tier,
    label_events_90d > 0 AND (first_cancel IS NULL OR first_cancel > $label_as_of) AS in_labels,
    CAST(coalesce(first_cancel <= $as_of, false) AS INTEGER) AS churned
FROM per_user
WHERE (events_90d > 0 AND first_cancel IS NULL)
   OR (label_events_90d > 0 AND (first_cancel IS NULL OR first_cancel > $label_as_of))
"""


def ingest(con, glob: str) -> int:
    """Read+write floor; returns the rows written."""
    con.execute(INGEST_SQL, {"glob": glob})
    return con.execute("SELECT count(*) FROM events").fetchone()[0]


def features_labels(con, glob: str, as_of: dt.date, label_as_of: dt.date) -> dict[str, int]:
    """Features+labels floor; returns the feature and label row counts."""
    con.execute("SET TimeZone = 'UTC'")  # an event's date is its UTC date
    con.execute(FEATURES_LABELS_SQL, {"glob": glob, "as_of": as_of, "label_as_of": label_as_of})
    features, labels = con.execute(
        "SELECT count(*) FILTER (WHERE in_features), count(*) FILTER (WHERE in_labels) FROM features_labels"
    ).fetchone()
    return {"feature_rows": features, "label_rows": labels}
