"""The warehouse lock: processes queue on the warehouse instead of failing on DuckDB's lock.

DuckDB's own retry is switched off (lock_retries=0) wherever a test shows the wait comes
from the warehouse lock.
"""

import signal
import time

import pytest

from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.warehouse_lock import WarehouseLockTimeout, acquire_lock, lock_path
from churn_platform_tests.helpers import warehouse_held

HOLD_SECONDS = 1.0


def _no_duckdb_retry(path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(path), lock_retries=0)


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_a_connection_waits_for_another_processs_writer_then_opens(tmp_path, read_only):
    path = tmp_path / "warehouse.duckdb"
    with warehouse_held(path, "write", HOLD_SECONDS) as holder:
        started = time.monotonic()
        with _no_duckdb_retry(path).connect(read_only=read_only) as con:
            waited = time.monotonic() - started
            assert con.execute("SELECT 42").fetchone() == (42,)
        assert holder.wait(timeout=10) == 0
    assert waited >= HOLD_SECONDS / 2


def test_readers_share_the_warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path=str(path)).connect():  # create the file readers open
        pass
    with warehouse_held(path, "read", 30):
        started = time.monotonic()
        with _no_duckdb_retry(path).connect(read_only=True) as con:
            assert con.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started < 5


def test_a_reader_waits_for_the_write_lock(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with warehouse_held(path, "lock", HOLD_SECONDS):
        started = time.monotonic()
        with acquire_lock(path, exclusive=False, timeout_seconds=30):
            assert time.monotonic() - started >= HOLD_SECONDS / 2


def test_a_lock_held_past_the_timeout_is_a_clear_error(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    warehouse = DuckDBWarehouse(path=str(path), lock_timeout_seconds=0.3)
    with warehouse_held(path, "lock", 30):
        with pytest.raises(WarehouseLockTimeout, match=f"write lock on {lock_path(path)} is still held"):
            with warehouse.connect():
                pass


def test_a_holder_killed_with_sigkill_releases_the_lock(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with warehouse_held(path, "write", 600) as holder:
        with pytest.raises(WarehouseLockTimeout):
            acquire_lock(path, exclusive=True, timeout_seconds=0.2)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with _no_duckdb_retry(path).connect() as con:
            assert con.execute("SELECT 42").fetchone() == (42,)
