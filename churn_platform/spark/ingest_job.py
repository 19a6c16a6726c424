"""The Spark ingest: staged days of landed events into raw_events, launched through Dagster Pipes.

The orchestrator stages each day's files, conformed to the event contract, as parquet with a
`landed_day` column (churn_platform/ingest/staging.py). This job applies the row rules of
`churn_platform/ingest/rules.py`, keeps one row per event_id and day, and overwrites exactly
the staged days' partitions of raw_events, raw_events_rejected and, last, the ingested_days
ledger. It reports per-day counts to the orchestrator, which turns them into the same
metadata and checks as the DuckDB ingest.

Run locally by PipesSubprocessClient (`python -m churn_platform.spark.ingest_job`); on a
cluster by a Pipes client of dagster-aws with the same extras.
"""

from __future__ import annotations

from churn_platform.ingest.rules import DEDUPE_ORDER, reason_expression
from churn_platform.ingest.validation import LANDED_DAY
from churn_platform.spark.tables import RAW_TABLES_DDL, contract_schema

_EVENT_COLUMNS = "event_id, user_id, event_type, event_ts, plan_tier, session_seconds, payment_status, source_key"


def _classify(spark, staging_uri: str) -> None:
    spark.read.parquet(staging_uri).createOrReplaceTempView("landed")
    spark.sql(
        f"SELECT *, {reason_expression(LANDED_DAY)} AS reason FROM landed"
    ).cache().createOrReplaceTempView("classified")


def _remove_dead_staging(spark, tables: tuple[str, ...]) -> list[str]:
    """Delete the `.spark-staging-*` folders a killed job left in `tables` (its files staged
    for a commit that never came). Safe: this job holds the warehouse lock, so no writer of
    these tables is alive. Spark never reads them; this frees their space."""
    jvm = spark._jvm
    hadoop_conf = spark._jsc.hadoopConfiguration()
    removed = []
    for table in tables:
        location = next(row.data_type for row in spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
                        if row.col_name == "Location")
        pattern = jvm.org.apache.hadoop.fs.Path(f"{location}/.spark-staging-*")
        filesystem = pattern.getFileSystem(hadoop_conf)
        for status in filesystem.globStatus(pattern) or []:
            filesystem.delete(status.getPath(), True)
            removed.append(status.getPath().toString())
    return removed


def _write(spark, days: list[str], files: dict[str, int]) -> dict[str, dict]:
    """Overwrite the staged days; returns each day's counts."""
    spark.sql(f"""
        INSERT OVERWRITE TABLE raw_events PARTITION (event_date)
        SELECT {_EVENT_COLUMNS}, {LANDED_DAY} AS event_date FROM (
            SELECT *, row_number() OVER (PARTITION BY {LANDED_DAY}, event_id ORDER BY {DEDUPE_ORDER}) AS copy
            FROM classified WHERE reason IS NULL
        ) WHERE copy = 1
    """)
    spark.sql(f"""
        INSERT OVERWRITE TABLE raw_events_rejected PARTITION (event_date)
        SELECT reason, {_EVENT_COLUMNS}, {LANDED_DAY} AS event_date FROM classified WHERE reason IS NOT NULL
    """)
    counts = {day: {"rows_in": 0, "valid": 0, "rejected_by_reason": {}} for day in days}
    for day, reason, n in spark.sql(
        f"SELECT CAST({LANDED_DAY} AS STRING), reason, count(*) FROM classified GROUP BY 1, 2"
    ).collect():
        counts[day]["rows_in"] += n
        if reason is None:
            counts[day]["valid"] += n
        else:
            counts[day]["rejected_by_reason"][reason] = n
    # A dynamic overwrite replaces only the partitions it writes: a day left with no valid
    # (or no rejected) rows must lose its old ones too.
    for day, count in counts.items():
        if count["valid"] == 0:
            spark.sql(f"ALTER TABLE raw_events DROP IF EXISTS PARTITION (event_date = DATE '{day}')")
        if not count["rejected_by_reason"]:
            spark.sql(f"ALTER TABLE raw_events_rejected DROP IF EXISTS PARTITION (event_date = DATE '{day}')")
    loaded = dict(spark.sql(
        "SELECT CAST(event_date AS STRING), count(*) FROM raw_events "
        f"WHERE event_date IN ({', '.join(f'DATE {day!r}' for day in days)}) GROUP BY 1"
    ).collect())
    rows = ", ".join(f"(DATE '{day}', {files[day]}, {loaded.get(day, 0)}, current_timestamp())" for day in days)
    spark.sql(
        "INSERT OVERWRITE TABLE ingested_days PARTITION (event_date) "
        f"SELECT files, rows, ingested_at, event_date FROM VALUES {rows} AS t(event_date, files, rows, ingested_at)"
    )
    for day in days:
        counts[day]["rows_loaded"] = loaded.get(day, 0)
    return counts


def main() -> None:
    from churn_platform.spark.pipes import job_context

    with job_context() as (pipes, spark):
        staging_uri = pipes.get_extra("staging_uri")
        files: dict[str, int] = pipes.get_extra("files_by_day")
        days = sorted(files)
        for ddl in RAW_TABLES_DDL:
            spark.sql(ddl)
        for path in _remove_dead_staging(spark, ("raw_events", "raw_events_rejected", "ingested_days")):
            pipes.log.warning(f"removed {path}: files staged by a job that never committed")
        pipes.log.info(f"Spark {spark.version}: loading {len(days)} staged day(s) from {staging_uri}")
        _classify(spark, staging_uri)
        counts = _write(spark, days, files)
        for day in days:
            pipes.report_custom_message({"day": day, **counts[day]})
        described = [tuple(row) for row in spark.sql("DESCRIBE TABLE raw_events").collect()]
        pipes.report_custom_message({"schema": contract_schema(described)})
        pipes.log.info(f"loaded {sum(c['rows_loaded'] for c in counts.values())} rows")


if __name__ == "__main__":
    main()
