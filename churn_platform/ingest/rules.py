"""The row rules of an ingest, as SQL both engines run (DuckDB in `load.py`, Spark in
`churn_platform/spark/ingest_job.py`): one definition, so both reject and keep the same rows.

First matching rule wins; a row with no reason is loaded. Of several valid rows with one
event_id in a day, the first in `DEDUPE_ORDER` is kept: the first file by key, then a total
order over the columns so both engines pick the same row, whatever order they read rows in.
"""

from __future__ import annotations

from churn_platform.events import EVENT_TYPES, MAX_SESSION_SECONDS, PAYMENT_STATUSES, PLAN_TIERS

DAY = "{day}"  # where a rule names the UTC day being loaded


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


REJECTION_RULES: tuple[tuple[str, str], ...] = (
    ("null_event_id", "event_id IS NULL OR event_id = ''"),
    ("null_user_id", "user_id IS NULL"),
    ("null_event_type", "event_type IS NULL"),
    ("unknown_event_type", f"event_type NOT IN ({_sql_list(EVENT_TYPES)})"),
    ("null_event_ts", "event_ts IS NULL"),
    ("wrong_date", f"CAST(event_ts AS DATE) <> {DAY}"),
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

DEDUPE_ORDER = (
    "source_key, event_ts, user_id, event_type, plan_tier, "
    "session_seconds NULLS LAST, payment_status NULLS LAST"
)


def reason_expression(day_sql: str) -> str:
    """The rejection reason of a row (NULL when valid); `day_sql` is the loaded day in SQL."""
    cases = " ".join(
        f"WHEN {condition.replace(DAY, day_sql)} THEN '{reason}'" for reason, condition in REJECTION_RULES
    )
    return f"CASE {cases} ELSE NULL END"
