"""The warehouse an engine keeps its tables in, and the DuckDB one: one file, one writer at a time."""


import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from churn_platform.constants import DEFAULT_INGEST_BATCH_ROWS
from churn_platform.events import EVENT_DATE_COLUMN, EVENT_FIELDS, RAW_EVENTS_SCHEMA, SOURCE_KEY_COLUMN
from churn_platform.warehouse_lock import HeldLock, acquire_lock

def _columns(schema: dict[str, str], not_null: set[str]) -> str:
    return ",\n    ".join(
        f"{name} {sql_type}" + (" NOT NULL" if name in not_null else "") for name, sql_type in schema.items()
    )


_REQUIRED_EVENT_COLUMNS = {f.name for f in EVENT_FIELDS if f.required}
_EVENT_KEYS = {EVENT_DATE_COLUMN[0], SOURCE_KEY_COLUMN[0]}
_REJECTED_SCHEMA = {EVENT_DATE_COLUMN[0]: EVENT_DATE_COLUMN[1], "reason": "VARCHAR",
                    **{name: t for name, t in RAW_EVENTS_SCHEMA.items() if name != EVENT_DATE_COLUMN[0]}}

# Tables the platform writes outside dbt, derived from the event contract (docs/contract.md §2-§3).
RAW_EVENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS raw_events (
    {_columns(RAW_EVENTS_SCHEMA, _REQUIRED_EVENT_COLUMNS | _EVENT_KEYS)}
);
CREATE TABLE IF NOT EXISTS raw_events_rejected (
    {_columns(_REJECTED_SCHEMA, _EVENT_KEYS | {"reason"})}
);
CREATE TABLE IF NOT EXISTS ingested_days (
    event_date DATE PRIMARY KEY,
    files INTEGER NOT NULL,
    rows BIGINT NOT NULL,
    ingested_at TIMESTAMP NOT NULL
);
"""
CHURN_SCORES_DDL = """
CREATE TABLE IF NOT EXISTS churn_scores (
    as_of_date DATE NOT NULL,
    user_id BIGINT NOT NULL,
    churn_probability DOUBLE NOT NULL,
    model_version VARCHAR NOT NULL,
    risk_decile INTEGER NOT NULL,
    reason_1 VARCHAR,
    reason_2 VARCHAR,
    reason_3 VARCHAR
);
-- A warehouse from before risk deciles and reasons gains their columns (older rows keep NULL).
ALTER TABLE churn_scores ADD COLUMN IF NOT EXISTS risk_decile INTEGER;
ALTER TABLE churn_scores ADD COLUMN IF NOT EXISTS reason_1 VARCHAR;
ALTER TABLE churn_scores ADD COLUMN IF NOT EXISTS reason_2 VARCHAR;
ALTER TABLE churn_scores ADD COLUMN IF NOT EXISTS reason_3 VARCHAR;
"""


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All statements inside commit together or not at all (readers never see half a partition)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file after every retry."""


class Warehouse(dg.ConfigurableResource):
    """What the assets ask of a warehouse, whatever the engine: its lock (held around every
    dbt run too) and a connection whose `execute(sql, params)` speaks the SQL both engines
    share (`?` parameters, fetchall/fetchone/df)."""

    @property
    def engine(self) -> str:
        raise NotImplementedError

    def lock(self, exclusive: bool) -> HeldLock:
        raise NotImplementedError

    def connect(self, read_only: bool = False):
        raise NotImplementedError

    def dbt_environment(self) -> dict[str, str]:
        """Variables the dbt profile of this engine reads, beyond CHURN_DATA_DIR."""
        return {}


def table_exists(con, name: str) -> bool:
    """Whether the warehouse has table `name` (Spark has no information_schema)."""
    if hasattr(con, "table_exists"):
        return con.table_exists(name)
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0]
    )


class DuckDBWarehouse(Warehouse):
    """The local warehouse file. Every connection first takes the warehouse lock
    (churn_platform/warehouse_lock.py), so runs queue on the file whether or not Dagster's pools
    are configured; a short retry on DuckDB's own lock covers processes outside the platform.
    """

    path: str
    memory_limit: str = "1GB"  # DuckDB's default is 80% of RAM; beyond this it spills to disk
    ingest_batch_rows: int = DEFAULT_INGEST_BATCH_ROWS  # landed rows per ingest transaction
    lock_timeout_seconds: float = 3600.0  # a writer may hold it for a whole ingest run (its max runtime)
    lock_retries: int = 20
    lock_backoff_seconds: float = 0.25

    @property
    def engine(self) -> str:
        return "duckdb"

    def lock(self, exclusive: bool) -> HeldLock:
        """The warehouse lock: exclusive to write (also held around every dbt run), shared to read."""
        return acquire_lock(self.path, exclusive, self.lock_timeout_seconds, dg.get_dagster_logger())

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.lock(exclusive=not read_only):
            con = self._open(read_only)
            try:
                yield con
            finally:
                con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "memory_limit": self.memory_limit,
        }
        for attempt in range(self.lock_retries + 1):
            try:
                return duckdb.connect(self.path, read_only=read_only, config=config)
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or attempt == self.lock_retries:
                    raise WarehouseLockedError(f"cannot open {self.path}: {err}") from err
                delay = self.lock_backoff_seconds * 2 ** min(attempt, 5)
                time.sleep(delay * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def ensure_raw_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(RAW_EVENTS_DDL)

    def replace_partition(self, table: str, ddl: str, column: str, value, rows) -> int:
        """Replace the rows of `table` where `column` = value with `rows` (a DataFrame or arrow
        table with the table's columns), in one transaction; returns the rows written."""
        with self.connect() as con:
            con.execute(ddl)
            con.register("partition_rows", rows)
            try:
                with transaction(con):
                    con.execute(f"DELETE FROM {table} WHERE {column} = ?", [value])
                    con.execute(f"INSERT INTO {table} SELECT * FROM partition_rows")
            finally:
                con.unregister("partition_rows")
        return len(rows)
