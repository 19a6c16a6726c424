"""raw_events: every landed file of a UTC day, validated and deduplicated into the warehouse."""


import datetime as dt

import dagster as dg

from churn_platform.constants import INGEST_GROUP, RAW_EVENTS, WAREHOUSE_POOL
from churn_platform.ingest.load import DayIngest, load_day
from churn_platform.ingest.validation import BadFileError, read_landed_file
from churn_platform.partitions import day_range
from churn_platform.resources.landing import LandingZone
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.retries import EXTERNAL_SERVICE_RETRY

SCHEMA_CHECK = "raw_events_schema"
DUPLICATE_RATE_CHECK = "raw_events_duplicate_rate"
REJECTED_RATE_CHECK = "raw_events_rejected_rate"

EXPECTED_WAREHOUSE_SCHEMA = {
    "event_date": "DATE",
    "event_id": "VARCHAR",
    "user_id": "BIGINT",
    "event_type": "VARCHAR",
    "event_ts": "TIMESTAMP",
    "plan_tier": "VARCHAR",
    "session_seconds": "DOUBLE",
    "payment_status": "VARCHAR",
    "source_key": "VARCHAR",
}


class DayFailure(Exception):
    """One day of a run could not be loaded; other days still are."""


def _ingest_day(landing: LandingZone, warehouse_con, day: dt.date, log) -> DayIngest:
    keys = landing.day_keys(day.isoformat())
    parquet_keys = [k for k in keys if k.endswith(".parquet") and k.count("/") == 3]
    ignored = sorted(set(keys) - set(parquet_keys))
    if ignored:
        log.warning(f"{day}: ignoring keys outside the layout: {ignored}")
    if not parquet_keys:
        raise DayFailure(f"{day}: no parquet files under {landing.uri(f'events/raw/date={day}/')}")
    files = []
    for key in parquet_keys:  # one day in memory at a time, never the whole range
        try:
            files.append(read_landed_file(key, landing.read(key)))
        except BadFileError as err:
            raise DayFailure(f"{day}: {landing.uri(err.key)}: {err.problem}") from err
    return load_day(warehouse_con, day, files)


def _warehouse_schema(con) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'raw_events' ORDER BY ordinal_position"
    ).fetchall()
    return dict(rows)


def build_raw_events(daily, gate_thresholds: dict[str, float]) -> dg.AssetsDefinition:
    @dg.asset(
        name=RAW_EVENTS,
        group_name=INGEST_GROUP,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        retry_policy=EXTERNAL_SERVICE_RETRY,
        kinds={"s3", "duckdb"},
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset=RAW_EVENTS, blocking=True,
                              description="Warehouse table matches the event contract."),
            dg.AssetCheckSpec(DUPLICATE_RATE_CHECK, asset=RAW_EVENTS,
                              description="Share of duplicate event_ids removed (warns)."),
            dg.AssetCheckSpec(REJECTED_RATE_CHECK, asset=RAW_EVENTS, blocking=True,
                              description="Share of rows rejected by the row rules."),
        ],
    )
    def raw_events(
        context: dg.AssetExecutionContext, landing: LandingZone, warehouse: DuckDBWarehouse
    ):
        """Product events of each UTC day from the S3 landing zone, validated and deduplicated.

        Bad rows are quarantined in `raw_events_rejected` with their reason; a bad file fails
        its day with the key named, and other days of the run still load.
        """
        days = day_range(context.partition_time_window)
        loaded: list[DayIngest] = []
        failures: list[str] = []
        with warehouse.connect() as con:
            warehouse.ensure_raw_tables(con)
            for day in days:
                try:
                    result = _ingest_day(landing, con, day, context.log)
                except DayFailure as err:
                    context.log.error(str(err))
                    failures.append(str(err))
                    continue
                loaded.append(result)
                context.log.info(
                    f"{day}: {result.rows_loaded} rows from {result.files} file(s), "
                    f"{result.duplicates_removed} duplicates removed, {result.rejected} rejected"
                )
            schema = _warehouse_schema(con)
        if failures:
            raise dg.Failure(
                description=f"{len(failures)} of {len(days)} day(s) not loaded:\n" + "\n".join(failures),
                metadata={"failed_days": len(failures), "loaded_days": len(loaded)},
                allow_retries=False,
            )
        yield from _results(loaded, schema, gate_thresholds)

    return raw_events


def _results(loaded: list[DayIngest], schema: dict[str, str], thresholds: dict[str, float]):
    rows_in = sum(d.rows_in for d in loaded)
    duplicates = sum(d.duplicates_removed for d in loaded)
    rejected_by_reason: dict[str, int] = {}
    for day in loaded:
        for reason, count in day.rejected_by_reason.items():
            rejected_by_reason[reason] = rejected_by_reason.get(reason, 0) + count
    rejected = sum(rejected_by_reason.values())
    duplicate_rate = duplicates / max(rows_in, 1)
    rejected_rate = rejected / max(rows_in, 1)
    yield dg.MaterializeResult(
        metadata={
            "rows": sum(d.rows_loaded for d in loaded),
            "files": sum(d.files for d in loaded),
            "days": len(loaded),
            "duplicates_removed": duplicates,
            "rejected_rows": rejected,
            **{f"rejected_{reason}": n for reason, n in sorted(rejected_by_reason.items())},
            "extra_columns": {k: v for d in loaded for k, v in d.extra_columns.items()},
        }
    )
    yield dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=schema == EXPECTED_WAREHOUSE_SCHEMA,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"schema": schema},
    )
    yield dg.AssetCheckResult(
        check_name=DUPLICATE_RATE_CHECK,
        passed=duplicate_rate <= thresholds["max_duplicate_rate"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"duplicate_rate": duplicate_rate, "threshold": thresholds["max_duplicate_rate"]},
    )
    yield dg.AssetCheckResult(
        check_name=REJECTED_RATE_CHECK,
        passed=rejected_rate <= thresholds["max_rejected_rate"],
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rejected_rate": rejected_rate,
            "threshold": thresholds["max_rejected_rate"],
            **{f"rejected_{reason}": n for reason, n in sorted(rejected_by_reason.items())},
        },
    )
