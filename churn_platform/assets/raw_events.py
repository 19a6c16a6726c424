"""raw_events: every landed file of a UTC day, validated and deduplicated into the warehouse."""


import datetime as dt

import dagster as dg

from churn_platform.checks.raw_events import (
    raw_events_check_results,
    raw_events_check_specs,
    rejected_by_reason,
)
from churn_platform.constants import INGEST_GROUP, RAW_EVENTS, WAREHOUSE_POOL
from churn_platform.events import day_prefix, parse_landing_key
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.ingest.load import DayIngest, load_day
from churn_platform.ingest.validation import BadFileError, read_landed_file
from churn_platform.partitions import day_range
from churn_platform.resources.landing import LandingZone
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.retries import EXTERNAL_SERVICE_RETRY


class DayFailure(Exception):
    """One day of a run could not be loaded; other days still are."""


def _ingest_day(landing: LandingZone, warehouse_con, day: dt.date, log) -> DayIngest:
    keys = landing.day_keys(day.isoformat())
    parquet_keys = [k for k in keys if parse_landing_key(k) == day.isoformat()]
    ignored = sorted(set(keys) - set(parquet_keys))
    if ignored:
        log.warning(f"{day}: ignoring keys outside the layout: {ignored}")
    if not parquet_keys:
        raise DayFailure(f"{day}: no parquet files under {landing.uri(day_prefix(day))}")
    files = []
    for key in parquet_keys:  # one day in memory at a time, never the whole range
        try:
            files.append(read_landed_file(key, landing.read(key)))
        except BadFileError as err:
            raise DayFailure(f"{day}: {landing.uri(err.key)}: {err.problem}") from err
    if sum(f.table.num_rows for f in files) == 0:
        # A day's events never amount to nothing: an empty export must not erase the day.
        raise DayFailure(f"{day}: every file under {landing.uri(day_prefix(day))} holds 0 rows "
                         f"({', '.join(f.key for f in files)}); the day's previous rows are kept")
    return load_day(warehouse_con, day, files)


def _warehouse_schema(con) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'raw_events' ORDER BY ordinal_position"
    ).fetchall()
    return dict(rows)


def build_raw_events(daily, thresholds: GateThresholds) -> dg.AssetsDefinition:
    @dg.asset(
        name=RAW_EVENTS,
        group_name=INGEST_GROUP,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        retry_policy=EXTERNAL_SERVICE_RETRY,
        kinds={"s3", "duckdb"},
        check_specs=raw_events_check_specs(thresholds),
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
        by_reason = rejected_by_reason(loaded)
        yield dg.MaterializeResult(
            metadata={
                "rows": sum(d.rows_loaded for d in loaded),
                "files": sum(d.files for d in loaded),
                "days": len(loaded),
                "duplicates_removed": sum(d.duplicates_removed for d in loaded),
                "rejected_rows": sum(by_reason.values()),
                **{f"rejected_{reason}": n for reason, n in by_reason.items()},
                "extra_columns": {k: v for d in loaded for k, v in d.extra_columns.items()},
            }
        )
        yield from raw_events_check_results(loaded, schema, thresholds)

    return raw_events
