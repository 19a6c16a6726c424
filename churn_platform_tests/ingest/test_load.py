"""Loading days: row rules quarantine and count, duplicates collapse, a reload replaces the day,
and a batch of days is all or nothing."""

import datetime as dt

import duckdb
import pyarrow as pa
import pytest

from churn_platform.ingest.load import load_day, load_days
from churn_platform.ingest.validation import LandedDay, conform
from churn_platform.resources.warehouse import RAW_EVENTS_DDL
from churn_platform_tests.helpers import event_table

DAY = dt.date(2024, 1, 10)


def _load(tables: dict[str, pa.Table]):
    con = duckdb.connect()
    con.execute(RAW_EVENTS_DDL)
    files = [conform(key, table) for key, table in tables.items()]
    return con, load_day(con, DAY, files)


def test_row_rules_reject_and_count_every_reason():
    n = 11
    good = event_table(DAY, 3)
    bad = event_table(
        DAY, n, start_id=100,
        event_id=[None, "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"],
        user_id=[1, None, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        event_type=["login", "login", "teleport", "login", "login", "session", "payment",
                    "login", "login", None, "login"],
        event_ts=[dt.datetime(2024, 1, 10, tzinfo=dt.timezone.utc)] * 3
        + [dt.datetime(2024, 1, 11, tzinfo=dt.timezone.utc), None]
        + [dt.datetime(2024, 1, 10, 23, 59, tzinfo=dt.timezone.utc)] * 6,
        plan_tier=["basic"] * 10 + ["gold"],
        session_seconds=[None] * 5 + [None, None, 3.0, None, None, None],
        payment_status=[None] * 6 + [None, None, "failed", None, None],
    )
    con, result = _load({"a.parquet": good, "b.parquet": bad})
    assert result.rows_loaded == 3
    assert result.rejected_by_reason == {
        "null_event_id": 1, "null_user_id": 1, "unknown_event_type": 1, "wrong_date": 1,
        "null_event_ts": 1, "session_without_seconds": 1, "payment_without_status": 1,
        "seconds_on_non_session": 1, "status_on_non_payment": 1, "null_event_type": 1,
        "unknown_plan_tier": 1,
    }
    assert con.execute("SELECT count(*) FROM raw_events_rejected").fetchone()[0] == n


def test_duplicate_event_ids_across_files_become_one_row():
    table = event_table(DAY, 5)
    con, result = _load({"a.parquet": table, "copy.parquet": table})
    assert (result.rows_in, result.rows_loaded, result.duplicates_removed) == (10, 5, 5)
    assert con.execute("SELECT count(DISTINCT event_id) FROM raw_events").fetchone()[0] == 5


def test_reload_replaces_the_day_only():
    con = duckdb.connect()
    con.execute(RAW_EVENTS_DDL)
    other = dt.date(2024, 1, 9)
    load_day(con, other, [conform("o.parquet", event_table(other, 4, start_id=50))])
    load_day(con, DAY, [conform("a.parquet", event_table(DAY, 5))])
    load_day(con, DAY, [conform("a.parquet", event_table(DAY, 2))])
    counts = dict(con.execute("SELECT event_date, count(*) FROM raw_events GROUP BY 1").fetchall())
    assert counts == {other: 4, DAY: 2}


def test_infinite_or_absurd_session_seconds_are_rejected():
    """Seconds are summed as an exact numeric downstream, which holds neither infinity nor 1e300."""
    seconds = [float("inf"), 60.0, float("-inf"), 1e12, 1e12 - 1, 1e300]
    table = event_table(DAY, len(seconds), event_type=["session"] * len(seconds),
                        payment_status=[None] * len(seconds), session_seconds=seconds)
    _, result = _load({"a.parquet": table})
    assert result.rows_loaded == 2
    assert result.rejected_by_reason == {"session_without_seconds": 4}


def test_a_batch_of_days_is_each_day_as_if_loaded_alone():
    """Days loaded in one transaction: the rules use each row's own day, duplicates collapse
    within a day only, and the counts are per day."""
    other = dt.date(2024, 1, 11)
    shared = event_table(DAY, 3)  # its event_ids land again on the next day: a different event
    next_day = event_table(other, 3, event_ts=[dt.datetime(2024, 1, 11, 8, tzinfo=dt.timezone.utc)] * 3)
    late = event_table(DAY, 1, start_id=90, event_ts=[dt.datetime(2024, 1, 11, 1, tzinfo=dt.timezone.utc)])
    con = duckdb.connect()
    con.execute(RAW_EVENTS_DDL)
    batch = [LandedDay(DAY, [conform("a.parquet", shared), conform("copy.parquet", shared), conform("l.parquet", late)]),
             LandedDay(other, [conform("b.parquet", next_day)])]
    first, second = load_days(con, batch)
    assert (first.rows_in, first.rows_loaded, first.duplicates_removed, first.rejected_by_reason) == (
        7, 3, 3, {"wrong_date": 1})
    assert (second.rows_in, second.rows_loaded, second.duplicates_removed, second.rejected_by_reason) == (3, 3, 0, {})
    counts = dict(con.execute("SELECT event_date, count(*) FROM raw_events GROUP BY 1").fetchall())
    assert counts == {DAY: 3, other: 3}
    ledger = dict(con.execute("SELECT event_date, rows FROM ingested_days").fetchall())
    assert ledger == {DAY: 3, other: 3}
    assert con.execute("SELECT event_date FROM raw_events_rejected").fetchall() == [(DAY,)]


def test_a_failed_batch_writes_none_of_its_days():
    con = duckdb.connect()
    con.execute(RAW_EVENTS_DDL)
    load_day(con, DAY, [conform("a.parquet", event_table(DAY, 5))])
    con.execute("DROP TABLE ingested_days")  # the last statement of the transaction fails
    other = dt.date(2024, 1, 11)
    with pytest.raises(duckdb.CatalogException):
        load_days(con, [LandedDay(DAY, [conform("a.parquet", event_table(DAY, 2))]),
                        LandedDay(other, [conform("b.parquet", event_table(other, 4, start_id=50))])])
    counts = dict(con.execute("SELECT event_date, count(*) FROM raw_events GROUP BY 1").fetchall())
    assert counts == {DAY: 5}
