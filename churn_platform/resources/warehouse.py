"""The DuckDB warehouse: one file, one writer at a time."""


import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

RAW_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS raw_events (
    event_date DATE NOT NULL,
    event_id VARCHAR NOT NULL,
    user_id BIGINT NOT NULL,
    event_type VARCHAR NOT NULL,
    event_ts TIMESTAMP NOT NULL,
    plan_tier VARCHAR,
    session_seconds DOUBLE,
    payment_status VARCHAR,
    source_key VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS raw_events_rejected (
    event_date DATE NOT NULL,
    reason VARCHAR NOT NULL,
    event_id VARCHAR,
    user_id BIGINT,
    event_type VARCHAR,
    event_ts TIMESTAMP,
    plan_tier VARCHAR,
    session_seconds DOUBLE,
    payment_status VARCHAR,
    source_key VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS ingested_days (
    event_date DATE PRIMARY KEY,
    files INTEGER NOT NULL,
    rows BIGINT NOT NULL,
    ingested_at TIMESTAMP NOT NULL
);
"""


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file after every retry."""


class DuckDBWarehouse(dg.ConfigurableResource):
    """The local warehouse file. Opens connections with a short retry on the file lock.

    Dagster's `warehouse` pool serializes writers; the retry covers readers (and other
    tools) that touch the file while a writer holds it.
    """

    path: str
    memory_limit: str = "1GB"  # DuckDB's default is 80% of RAM; beyond this it spills to disk
    lock_retries: int = 20
    lock_backoff_seconds: float = 0.25

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
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
