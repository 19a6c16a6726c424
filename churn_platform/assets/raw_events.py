"""raw_events: every landed file of a UTC day, validated and deduplicated into the warehouse."""


import datetime as dt
from typing import NamedTuple

import dagster as dg

from churn_platform.checks.raw_events import (
    raw_events_check_results,
    raw_events_check_specs,
    rejected_by_reason,
)
from churn_platform.constants import INGEST_GROUP, RAW_EVENTS, WAREHOUSE_POOL
from churn_platform.events import day_prefix, parse_landing_key
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.ingest.load import DayIngest, load_days
from churn_platform.ingest.read_ahead import DeferredLog, read_ahead
from churn_platform.ingest.validation import BadFileError, LandedDay, LandedFile, read_landed_file
from churn_platform.partitions import day_range
from churn_platform.resources.landing import LandingZone
from churn_platform.ingest.staging import StagingArea, day_table
from churn_platform.resources.spark_jobs import SparkJobs
from churn_platform.resources.spark_warehouse import SparkWarehouse
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.retries import EXTERNAL_SERVICE_RETRY


class DayFailure(Exception):
    """One day of a run could not be loaded (the others still are); the message names the key.

    `bad_input` days wait for new or changed files; the others (S3, DuckDB, memory) may pass
    on a retry.
    """

    def __init__(self, day: dt.date, problem: str, bad_input: bool):
        super().__init__(f"{day}: {problem}")
        self.day = day
        self.bad_input = bad_input


def _read_day(landing: LandingZone, day: dt.date, log) -> list[LandedFile]:
    """The day's landed files, each validated and conformed to the contract."""
    keys = landing.day_keys(day.isoformat())
    parquet_keys = [k for k in keys if parse_landing_key(k) == day.isoformat()]
    ignored = sorted(set(keys) - set(parquet_keys))
    if ignored:
        log.warning(f"{day}: ignoring keys outside the layout: {ignored}")
    if not parquet_keys:
        raise DayFailure(day, f"no parquet files under {landing.uri(day_prefix(day))}", bad_input=True)
    files = []
    for key in parquet_keys:  # one day in memory at a time, never the whole range
        try:
            payload = landing.read(key)
        except Exception as err:  # S3 or memory trouble, not the file's fault: worth a retry
            raise DayFailure(day, f"{landing.uri(key)}: cannot be read ({type(err).__name__}: {err})",
                             bad_input=False) from err
        try:
            files.append(read_landed_file(key, payload))
        except BadFileError as err:
            raise DayFailure(day, f"{landing.uri(err.key)}: {err.problem}", bad_input=True) from err
    if sum(f.table.num_rows for f in files) == 0:
        # A day's events never amount to nothing: an empty export must not erase the day.
        raise DayFailure(day, f"every file under {landing.uri(day_prefix(day))} holds 0 rows "
                              f"({', '.join(f.key for f in files)}); the day's previous rows are kept",
                         bad_input=True)
    return files


def _read_batches(landing: LandingZone, days: list[dt.date], batch_rows: int, log, failures: list[DayFailure]):
    """The readable days, in batches of about `batch_rows` landed rows (load.py); a day that
    cannot be read goes to `failures` and its neighbours still load."""
    batch: list[LandedDay] = []
    for day in days:
        try:
            batch.append(LandedDay(day, _read_day(landing, day, log)))
        except DayFailure as err:
            log.error(str(err))
            failures.append(err)
            continue
        if sum(d.rows for d in batch) >= batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


def _load_batch(landing: LandingZone, con, batch: list[LandedDay], log) -> tuple[list[DayIngest], list[DayFailure]]:
    """Load a batch in one transaction; if it fails, load its days one by one, so only the day
    at fault fails (its transaction rolled back, its previous rows stand)."""
    try:
        return load_days(con, batch), []
    except Exception as err:
        if len(batch) > 1:
            log.warning(f"{batch[0].day}..{batch[-1].day} failed as one transaction ({type(err).__name__}: "
                        f"{err}); loading its days one by one")
            loaded, failures = [], []
            for one in batch:
                day_loaded, day_failed = _load_batch(landing, con, [one], log)
                loaded += day_loaded
                failures += day_failed
            return loaded, failures
        [one] = batch
        failure = DayFailure(one.day, f"loading {', '.join(landing.uri(f.key) for f in one.files)} failed "
                                      f"({type(err).__name__}: {err}); the day's previous rows are kept",
                             bad_input=False)
        log.error(str(failure))
        return [], [failure]


def _day_metadata(day: DayIngest) -> dict:
    return {
        "rows": day.rows_loaded,
        "files": day.files,
        "days": 1,
        "duplicates_removed": day.duplicates_removed,
        "rejected_rows": day.rejected,
        **{f"rejected_{reason}": n for reason, n in sorted(day.rejected_by_reason.items())},
        "extra_columns": day.extra_columns,
    }


def _partial_failure(loaded: list[DayIngest], failures: list[DayFailure], days: int):
    """Record every day that committed as its own materialization, then fail the bad days.

    Dagster cannot mark part of a range run's output as failed, but materializations of
    single partitions yielded before the failure count: the UI shows the loaded days as
    materialized and only the failed ones as failed.
    """
    for day in loaded:
        yield dg.AssetMaterialization(asset_key=RAW_EVENTS, partition=day.day.isoformat(),
                                      metadata=_day_metadata(day))
    bad_input = [f for f in failures if f.bad_input]
    retryable = [f for f in failures if not f.bad_input]
    raise dg.Failure(
        description=f"{len(failures)} of {days} day(s) not loaded:\n" + "\n".join(map(str, failures)),
        metadata={
            "loaded_days": dg.MetadataValue.json([d.day.isoformat() for d in loaded]),
            "bad_input_days": dg.MetadataValue.json({f.day.isoformat(): str(f) for f in bad_input}),
            "retryable_days": dg.MetadataValue.json({f.day.isoformat(): str(f) for f in retryable}),
        },
        # Bad input fails the same way every time; S3, DuckDB or memory trouble may not.
        allow_retries=bool(retryable),
    )


def _warehouse_schema(con) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'raw_events' ORDER BY ordinal_position"
    ).fetchall()
    return dict(rows)


def _load_on_duckdb(context, landing: LandingZone, warehouse: DuckDBWarehouse, days: list[dt.date]):
    """Days in batches, each batch in its own transaction, the next one read while the current
    one is written; returns (loaded, failures, the table's schema)."""
    loaded: list[DayIngest] = []
    failures: list[DayFailure] = []
    reader_log = DeferredLog()  # what the reading thread reports, logged here in order
    with warehouse.connect() as con:
        warehouse.ensure_raw_tables(con)
        for batch in read_ahead(_read_batches(landing, days, warehouse.ingest_batch_rows, reader_log, failures)):
            reader_log.replay(context.log)
            batch_loaded, batch_failed = _load_batch(landing, con, batch, context.log)
            loaded += batch_loaded
            failures += batch_failed
            _log_days(context, batch_loaded)  # as each batch commits: the log shows progress
        reader_log.replay(context.log)
        schema = _warehouse_schema(con)
    loaded.sort(key=lambda d: d.day)
    failures.sort(key=lambda f: f.day)
    return loaded, failures, schema


class _StagedDay(NamedTuple):
    files: int
    extra_columns: dict[str, list[str]]


def _load_on_spark(context, landing: LandingZone, warehouse: SparkWarehouse, spark_jobs: SparkJobs,
                   days: list[dt.date]):
    """Stage every readable day, then one Spark job loads them (churn_platform/spark/ingest_job.py)."""
    failures: list[DayFailure] = []
    staged: dict[dt.date, _StagedDay] = {}  # what a day's files were, not their rows: one day in memory
    staging = StagingArea(warehouse.staging_root(), context.run_id)
    try:
        for day in days:
            try:
                files = _read_day(landing, day, context.log)
            except DayFailure as err:
                context.log.error(str(err))
                failures.append(err)
                continue
            staging.put(f"{day.isoformat()}.parquet", day_table(day, files))
            staged[day] = _StagedDay(len(files), {f.key: list(f.extra_columns) for f in files if f.extra_columns})
        if not staged:
            return [], failures, None
        messages = spark_jobs.run(context, "ingest_job", {
            "staging_uri": staging.uri, "files_by_day": {d.isoformat(): f.files for d, f in staged.items()},
        }, warehouse)
    finally:
        staging.clear()
    schema = next(m["schema"] for m in messages if "schema" in m)
    loaded = [_spark_day(m, staged) for m in messages if "day" in m]
    return loaded, failures, schema


def _spark_day(message: dict, staged: dict[dt.date, _StagedDay]) -> DayIngest:
    day = dt.date.fromisoformat(message["day"])
    files = staged[day]
    return DayIngest(
        day=day,
        files=files.files,
        rows_in=message["rows_in"],
        rows_loaded=message["rows_loaded"],
        duplicates_removed=message["valid"] - message["rows_loaded"],
        rejected_by_reason=message["rejected_by_reason"],
        extra_columns=files.extra_columns,
    )


def _results(loaded: list[DayIngest], failures: list[DayFailure], days: int, schema, thresholds):
    """The run's outcome, the same on both engines: per-day materializations and a failure
    naming the bad days, or one materialization and the checks."""
    if failures:
        yield from _partial_failure(loaded, failures, days)
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


def _log_days(context, loaded: list[DayIngest]) -> None:
    """One log event for the days that committed together, a line a day (an event costs ~15 ms
    in the run's event log: a line per day was ~2 s of a 126-day run)."""
    if loaded:
        context.log.info("\n".join(
            f"{result.day}: {result.rows_loaded} rows from {result.files} file(s), "
            f"{result.duplicates_removed} duplicates removed, {result.rejected} rejected"
            for result in loaded
        ))


_DESCRIPTION = """Product events of each UTC day from the S3 landing zone, validated and deduplicated.

Bad rows are quarantined in `raw_events_rejected` with their reason; a bad file fails
its day with the key named, and the other days of the run still load and show as
materialized.
"""


def build_raw_events(daily, thresholds: GateThresholds, engine: str) -> dg.AssetsDefinition:
    asset = dg.asset(
        name=RAW_EVENTS,
        group_name=INGEST_GROUP,
        partitions_def=daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        retry_policy=EXTERNAL_SERVICE_RETRY,
        kinds={"s3", engine},
        check_specs=raw_events_check_specs(thresholds),
        description=_DESCRIPTION,
    )
    if engine == "spark":
        @asset
        def raw_events_on_spark(context: dg.AssetExecutionContext, landing: LandingZone,
                                warehouse: SparkWarehouse, spark_jobs: SparkJobs):
            days = day_range(context.partition_time_window)
            loaded, failures, schema = _load_on_spark(context, landing, warehouse, spark_jobs, days)
            _log_days(context, loaded)  # the job commits every staged day at once
            yield from _results(loaded, failures, len(days), schema, thresholds)

        return raw_events_on_spark

    @asset
    def raw_events(context: dg.AssetExecutionContext, landing: LandingZone, warehouse: DuckDBWarehouse):
        days = day_range(context.partition_time_window)
        loaded, failures, schema = _load_on_duckdb(context, landing, warehouse, days)
        yield from _results(loaded, failures, len(days), schema, thresholds)

    return raw_events
