"""user_daily_activity: the per-user daily aggregate of raw_events, a day replaced whole.

The weekly features read one small row per active user and day instead of 90 days of raw
events. The SQL and why it is not a dbt model: churn_platform/ingest/daily_activity.py.
"""

import datetime as dt
import time

import dagster as dg

from churn_platform import automation
from churn_platform.constants import INGEST_GROUP, RAW_EVENTS, USER_DAILY_ACTIVITY, WAREHOUSE_POOL
from churn_platform.ingest.daily_activity import (
    DUCKDB_DDL,
    EVENT_COUNTS,
    counts_by_day_sql,
    replace_days_on_duckdb,
    replace_days_on_spark,
)
from churn_platform.partitions import day_range
from churn_platform.readiness import days_not_ingested
from churn_platform.resources.warehouse import Warehouse
from churn_platform.spark.tables import DAILY_ACTIVITY_DDL

MATCHES_RAW_EVENTS_CHECK = "user_daily_activity_matches_raw_events"


def day_batches(rows_by_day: dict[dt.date, int], batch_rows: int) -> list[list[dt.date]]:
    """Consecutive days in batches of about `batch_rows` raw rows (a day is never split): at 100k
    users one GROUP BY over 126 days spills past DuckDB's memory cap, batches of ~2M rows do not."""
    batches: list[list[dt.date]] = [[]]
    rows = 0
    for day, day_rows in sorted(rows_by_day.items()):
        if batches[-1] and rows + day_rows > batch_rows:
            batches.append([])
            rows = 0
        batches[-1].append(day)
        rows += day_rows
    return [b for b in batches if b]


def _ingested_rows(con, days: list[dt.date]) -> dict[dt.date, int]:
    return dict(con.execute(
        "SELECT event_date, rows FROM ingested_days WHERE event_date BETWEEN ? AND ?", [days[0], days[-1]]
    ).fetchall())


def _replace(context, warehouse, con, ingested: dict[dt.date, int]) -> None:
    if warehouse.engine == "spark":
        con.execute(DAILY_ACTIVITY_DDL)
        replace_days_on_spark(con, sorted(ingested))
        return
    con.execute(DUCKDB_DDL)
    for batch in day_batches(ingested, warehouse.ingest_batch_rows):
        started = time.perf_counter()
        replace_days_on_duckdb(con, batch)
        context.log.info(f"{USER_DAILY_ACTIVITY}: {batch[0]}..{batch[-1]} ({sum(ingested[d] for d in batch):,} "
                         f"raw rows) committed in {time.perf_counter() - started:.1f} s")


def _check(ingested: dict[dt.date, int], counted: dict[dt.date, tuple[int, int]]) -> dg.AssetCheckResult:
    """Every raw_events row of a day is counted once in its aggregate."""
    wrong = {day.isoformat(): {"raw_events_rows": rows, "events_counted": counted.get(day, (0, 0))[1]}
             for day, rows in sorted(ingested.items()) if counted.get(day, (0, 0))[1] != rows}
    return dg.AssetCheckResult(
        check_name=MATCHES_RAW_EVENTS_CHECK,
        passed=not wrong,
        metadata={"days_checked": len(ingested), "days_wrong": len(wrong),
                  **({"wrong": dg.MetadataValue.json(wrong)} if wrong else {})},
    )


_DESCRIPTION = """One row per user and UTC day with events: the day's event counts, session
seconds, latest event and its plan tier (docs/contract.md §3). A day is rebuilt whole, in one
transaction, from that day's raw_events; the weekly features and labels read it.
"""


def build_daily_activity(daily, engine: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=USER_DAILY_ACTIVITY,
        group_name=INGEST_GROUP,
        partitions_def=daily,
        deps=[RAW_EVENTS],
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={engine},
        automation_condition=automation.daily_activity(),
        check_specs=[dg.AssetCheckSpec(
            MATCHES_RAW_EVENTS_CHECK, asset=USER_DAILY_ACTIVITY, blocking=True,
            description=f"Each day's {' + '.join(EVENT_COUNTS)} equals its raw_events rows.",
        )],
        description=_DESCRIPTION,
    )
    def user_daily_activity(context: dg.AssetExecutionContext, warehouse: Warehouse):
        days = day_range(context.partition_time_window)
        with warehouse.connect() as con:
            missing = days_not_ingested(con, days[0], days[-1])
            if missing:  # never an empty aggregate for a day whose events have not landed
                raise dg.Failure(description=f"{USER_DAILY_ACTIVITY} {days[0]}..{days[-1]}: " + "; ".join(missing),
                                 allow_retries=False)
            ingested = _ingested_rows(con, days)
            _replace(context, warehouse, con, ingested)
            counted = {day: (users, events or 0) for day, users, events in con.execute(
                counts_by_day_sql(days)).fetchall()}
        yield dg.MaterializeResult(
            metadata={"rows": sum(users for users, _ in counted.values()), "days": len(days),
                      "raw_events_rows": sum(ingested.values())},
            check_results=[_check(ingested, counted)],
        )

    return user_daily_activity
