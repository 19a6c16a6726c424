"""The synthetic event generator honours the landing contract and yields a learnable, healthy churn story."""

import dataclasses
import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from churn_platform.constants import FEATURE_COLUMNS
from churn_platform.events import EVENT_COLUMNS, EVENT_TYPES, PAYMENT_STATUSES, PLAN_TIERS
from churn_platform.dev.generator import GeneratorConfig, iter_daily_events, parquet_bytes, write_local

END = datetime.date(2025, 6, 1)  # a Sunday, so weekly as-of dates fall on whole weeks
SMALL = GeneratorConfig(users=1_000, days=21, end_date=END, seed=7)
FULL = GeneratorConfig(users=20_000, days=150, end_date=END, seed=42)
ONE_DAY = datetime.timedelta(days=1)

# docs/contract.md §3 at as-of date $a, written independently of the platform's dbt models.
FEATURES_SQL = """
WITH population AS (
    SELECT user_id FROM events WHERE d <= $a
    GROUP BY user_id
    HAVING max(d) >= $a - 89 AND count(*) FILTER (WHERE event_type = 'cancel') = 0
),
recent AS (SELECT e.* FROM events e JOIN population USING (user_id) WHERE d <= $a)
SELECT
    user_id,
    coalesce(($a - max(d) FILTER (WHERE event_type = 'login' AND d >= $a - 89)), 90)::INT AS days_since_last_login,
    count(*) FILTER (WHERE event_type = 'payment' AND d >= $a - 29) AS payment_attempts_30d,
    count(*) FILTER (WHERE event_type = 'payment' AND payment_status = 'failed' AND d >= $a - 29)
        AS payment_failures_30d,
    payment_failures_30d / greatest(payment_attempts_30d, 1) AS payment_failure_rate,
    coalesce(avg(session_seconds) FILTER (WHERE event_type = 'session' AND d >= $a - 6), 0.0)
        AS avg_session_length_7d,
    count(*) FILTER (WHERE event_type = 'support_ticket' AND d >= $a - 89) AS support_tickets_90d,
    arg_max(plan_tier, event_ts) AS plan_tier,
    (user_id IN (SELECT user_id FROM events WHERE event_type = 'cancel' AND d > $a AND d <= $a + 28))::INT
        AS churned
FROM recent
GROUP BY user_id
ORDER BY user_id
"""


@pytest.fixture(scope="module")
def small_days():
    return list(iter_daily_events(SMALL))


@pytest.fixture(scope="module")
def warehouse():
    """All events of the 20k-user, 150-day data set in DuckDB, with each event's UTC date as `d`."""
    events = pa.concat_tables(table for _, table in iter_daily_events(FULL))
    con = duckdb.connect()
    con.register("raw_events", events)
    con.execute("CREATE TABLE events AS SELECT *, CAST(timezone('UTC', event_ts) AS DATE) AS d FROM raw_events")
    con.unregister("raw_events")
    yield con
    con.close()


def features_at(con, as_of):
    return con.execute(FEATURES_SQL, {"a": as_of}).df()


def weekly_as_of_dates(last_days):
    """Sundays among the last `last_days` days of the full range."""
    days = (END - i * ONE_DAY for i in range(last_days))
    return sorted(day for day in days if day.weekday() == 6)


def test_tables_have_exact_contract_schema(small_days):
    expected = [
        ("event_id", pa.string(), False),
        ("user_id", pa.int64(), False),
        ("event_type", pa.string(), False),
        ("event_ts", pa.timestamp("us", tz="UTC"), False),
        ("plan_tier", pa.string(), True),
        ("session_seconds", pa.float64(), True),
        ("payment_status", pa.string(), True),
    ]
    assert tuple(name for name, _, _ in expected) == EVENT_COLUMNS
    for _, table in small_days:
        assert [(f.name, f.type, f.nullable) for f in table.schema] == expected
        assert table.num_rows > 0


def test_one_table_per_day_ending_on_end_date_with_matching_event_dates(small_days):
    dates = [date for date, _ in small_days]
    assert dates == [SMALL.start_date + i * ONE_DAY for i in range(SMALL.days)]
    assert dates[-1] == END
    for date, table in small_days:
        assert pc.unique(pc.cast(table["event_ts"], pa.date32())).to_pylist() == [date]


def test_values_and_null_rules(small_days):
    table = pa.concat_tables(table for _, table in small_days)
    assert set(pc.unique(table["event_type"]).to_pylist()) == set(EVENT_TYPES)
    assert set(pc.unique(table["plan_tier"]).to_pylist()) <= set(PLAN_TIERS)
    for column in ("event_id", "user_id", "event_type", "event_ts", "plan_tier"):
        assert table[column].null_count == 0

    is_session = pc.equal(table["event_type"], "session")
    is_payment = pc.equal(table["event_type"], "payment")
    assert pc.all(pc.equal(pc.is_valid(table["session_seconds"]), is_session)).as_py()
    assert pc.all(pc.equal(pc.is_valid(table["payment_status"]), is_payment)).as_py()
    assert pc.min(table["session_seconds"]).as_py() > 0
    assert set(pc.unique(table["payment_status"].drop_null()).to_pylist()) == set(PAYMENT_STATUSES)


def test_event_ids_unique_across_all_days(warehouse):
    total, distinct = warehouse.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    assert total == distinct


def test_same_seed_gives_identical_bytes_and_another_seed_differs(small_days):
    again = list(iter_daily_events(SMALL))
    assert [parquet_bytes(t) for _, t in again] == [parquet_bytes(t) for _, t in small_days]

    other = next(iter_daily_events(dataclasses.replace(SMALL, seed=SMALL.seed + 1)))[1]
    assert not other.equals(small_days[0][1])


def test_about_two_to_three_events_per_live_user_day(warehouse):
    """A user is live from their first event until their cancel (or the end of the range)."""
    events, active_user_days, live_user_days = warehouse.execute(
        """
        WITH spans AS (
            SELECT user_id, count(*) AS events, count(DISTINCT d) AS active_days,
                   coalesce(min(d) FILTER (WHERE event_type = 'cancel'), max(d) + 1) - min(d) AS live_days
            FROM events GROUP BY user_id
        )
        SELECT sum(events), sum(active_days), sum(live_days) FROM spans
        """
    ).fetchone()
    assert 2.0 <= events / live_user_days <= 3.5
    assert 0.5 <= active_user_days / live_user_days <= 0.95  # daily-ish, not every day


def test_cancel_is_each_users_single_last_event(warehouse):
    cancels_per_user, events_after_cancel = warehouse.execute(
        """
        WITH cancels AS (
            SELECT user_id, count(*) AS n, min(event_ts) AS ts FROM events WHERE event_type = 'cancel' GROUP BY user_id
        )
        SELECT max(c.n), count(e.user_id) FILTER (WHERE e.event_ts >= c.ts AND e.event_type <> 'cancel')
        FROM cancels c JOIN events e USING (user_id)
        """
    ).fetchone()
    assert cancels_per_user == 1
    assert events_after_cancel == 0


def test_population_stays_healthy_and_churn_rate_is_realistic(warehouse):
    for as_of in weekly_as_of_dates(90):
        features = features_at(warehouse, as_of)
        assert len(features) >= 0.6 * FULL.users, as_of
        if as_of + 28 * ONE_DAY <= END:
            assert 0.05 <= features["churned"].mean() <= 0.20, as_of


def test_billing_is_monthly_tickets_rare_and_some_users_change_plan(warehouse):
    as_of = weekly_as_of_dates(90)[-1]
    features = features_at(warehouse, as_of)
    assert 0.9 <= features["payment_attempts_30d"].mean() <= 1.4
    assert 0.01 <= features["payment_failures_30d"].sum() / features["payment_attempts_30d"].sum() <= 0.2
    assert features["support_tickets_90d"].mean() <= 1.0

    users_per_plan_count = warehouse.execute(
        "SELECT count(DISTINCT plan_tier) AS plans, count(*) FROM events GROUP BY user_id"
    ).df()
    share_changed = (users_per_plan_count["plans"] > 1).mean()
    assert 0.01 <= share_changed <= 0.25


def test_features_predict_28_day_churn(warehouse):
    as_of = weekly_as_of_dates(90)[-5]  # the latest Sunday whose label window has closed
    assert as_of + 28 * ONE_DAY == END
    data = features_at(warehouse, as_of)
    data["plan_tier"] = data["plan_tier"].map({tier: rank for rank, tier in enumerate(PLAN_TIERS)})

    churners = data[data["churned"] == 1].mean(numeric_only=True)
    stayers = data[data["churned"] == 0].mean(numeric_only=True)
    assert churners["days_since_last_login"] > stayers["days_since_last_login"]
    assert churners["avg_session_length_7d"] < stayers["avg_session_length_7d"]
    assert churners["payment_failure_rate"] > stayers["payment_failure_rate"]
    assert churners["support_tickets_90d"] > stayers["support_tickets_90d"]

    x_train, x_test, y_train, y_test = train_test_split(
        data[list(FEATURE_COLUMNS)], data["churned"], test_size=0.2, stratify=data["churned"], random_state=42
    )
    model = HistGradientBoostingClassifier(random_state=42).fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.75 <= auc <= 0.95


def test_write_local_writes_landing_layout_that_reads_back_equal(tmp_path, small_days):
    paths = write_local(SMALL, tmp_path, files_per_day=3)

    expected = [
        tmp_path / "events" / "raw" / f"date={date:%Y-%m-%d}" / f"part-{part:03d}.parquet"
        for date, _ in small_days
        for part in range(3)
    ]
    assert paths == expected
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(expected)
    for i, (_, table) in enumerate(small_days):
        parts = [pq.read_table(path) for path in paths[3 * i : 3 * i + 3]]
        assert pa.concat_tables(parts).equals(table)


def test_parquet_bytes_round_trip(small_days):
    table = small_days[-1][1]
    data = parquet_bytes(table)
    assert data[:4] == b"PAR1"
    assert pq.read_table(pa.BufferReader(data)).equals(table)


def test_config_rejects_empty_ranges():
    with pytest.raises(ValueError):
        GeneratorConfig(users=0, end_date=END)
    with pytest.raises(ValueError):
        write_local(SMALL, "unused", files_per_day=0)


def test_days_are_produced_lazily_with_events_in_time_order():
    """One day at a time keeps memory at one day of events, however long the range."""
    days = iter_daily_events(dataclasses.replace(FULL, users=100))
    first_date, first = next(days)
    assert first_date == FULL.start_date
    timestamps = first["event_ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(timestamps) >= 0).all()
