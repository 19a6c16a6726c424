"""The DuckDB warehouse resource: waits out another process's lock, replaces a partition atomically."""

import datetime as dt
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest

from churn_platform.resources.warehouse import CHURN_SCORES_DDL, DuckDBWarehouse, WarehouseLockedError

HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold_lock(path, seconds: float) -> subprocess.Popen:
    """Another process holding the file (DuckDB allows one writer process)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_connect_waits_for_another_process_to_release_the_lock(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    holder = _hold_lock(path, 1.0)
    started = time.monotonic()
    warehouse = DuckDBWarehouse(path=str(path), lock_retries=20, lock_backoff_seconds=0.1)
    with warehouse.connect() as con:
        assert con.execute("SELECT 42").fetchone() == (42,)
    assert time.monotonic() - started >= 0.5  # it did wait for the holder
    holder.wait(timeout=10)


def test_lock_held_past_every_retry_is_a_clear_error(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    holder = _hold_lock(path, 5.0)
    try:
        warehouse = DuckDBWarehouse(path=str(path), lock_retries=1, lock_backoff_seconds=0.05)
        with pytest.raises(WarehouseLockedError, match=str(path)):
            with warehouse.connect():
                pass
    finally:
        holder.kill()
        holder.wait()


def _scores(as_of: dt.date, users: range, probability: float) -> pd.DataFrame:
    return pd.DataFrame({"as_of_date": as_of, "user_id": list(users), "churn_probability": probability,
                         "model_version": "1", "risk_decile": 1, "reason_1": "plan_tier", "reason_2": None,
                         "reason_3": None})


def test_a_scores_table_from_before_deciles_and_reasons_gains_their_columns(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    week1, week2 = dt.date(2024, 1, 7), dt.date(2024, 1, 14)
    with warehouse.connect() as con:
        con.execute("CREATE TABLE churn_scores (as_of_date DATE NOT NULL, user_id BIGINT NOT NULL, "
                    "churn_probability DOUBLE NOT NULL, model_version VARCHAR NOT NULL)")
        con.execute("INSERT INTO churn_scores VALUES (?, 1, 0.5, '1')", [week1])
    warehouse.replace_partition("churn_scores", CHURN_SCORES_DDL, "as_of_date", week2, _scores(week2, range(2), 0.2))
    with warehouse.connect(read_only=True) as con:
        rows = con.execute("SELECT as_of_date, risk_decile, reason_1 FROM churn_scores ORDER BY 1, user_id").fetchall()
    assert rows == [(week1, None, None), (week2, 1, "plan_tier"), (week2, 1, "plan_tier")]


def test_replace_partition_touches_only_its_partition_and_is_all_or_nothing(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    week1, week2 = dt.date(2024, 1, 7), dt.date(2024, 1, 14)
    warehouse.replace_partition("churn_scores", CHURN_SCORES_DDL, "as_of_date", week1, _scores(week1, range(5), 0.1))
    warehouse.replace_partition("churn_scores", CHURN_SCORES_DDL, "as_of_date", week2, _scores(week2, range(3), 0.2))
    assert warehouse.replace_partition(
        "churn_scores", CHURN_SCORES_DDL, "as_of_date", week1, _scores(week1, range(2), 0.3)) == 2

    bad = _scores(week1, range(4), 0.4)
    bad.loc[3, "churn_probability"] = None  # violates NOT NULL after three good rows
    with pytest.raises(duckdb.ConstraintException):
        warehouse.replace_partition("churn_scores", CHURN_SCORES_DDL, "as_of_date", week1, bad)

    with warehouse.connect(read_only=True) as con:
        rows = con.execute("SELECT as_of_date, count(*), max(churn_probability) FROM churn_scores "
                           "GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [(week1, 2, 0.3), (week2, 3, 0.2)]  # the failed replace left week 1 as it was
