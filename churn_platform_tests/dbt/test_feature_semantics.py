"""Known-answer tests of the features and labels against docs/contract.md §3: the daily
aggregate as the ingest group builds it (churn_platform/ingest/daily_activity.py), then the dbt
models with the real dbt CLI.

One warehouse with hand-built raw events is built once per module (the daily window plus the
single week ending AS_OF); tests that change data work on a copy of it.
"""

import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from churn_platform.constants import FEATURE_COLUMNS
from churn_platform.ingest.daily_activity import DUCKDB_DDL, replace_days_on_duckdb
from churn_platform.windows import days

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")
_dbt_run_ids = itertools.count()

AS_OF = dt.date(2024, 3, 31)  # a Sunday: the as-of date A of the week 2024-03-25..31
WEEK_BEFORE = AS_OF - dt.timedelta(days=7)
TWO_WEEKS_BEFORE = AS_OF - dt.timedelta(days=14)
DAILY_WINDOW = (AS_OF - dt.timedelta(days=210), AS_OF + dt.timedelta(days=29))


def day(offset: int) -> dt.date:
    return AS_OF + dt.timedelta(days=offset)


def event(user_id, event_type, offset, plan_tier="basic", *, at=dt.time(12), seconds=None, status=None, event_id=None):
    event_ts = dt.datetime.combine(day(offset), at)
    return {
        "event_date": event_ts.date(),
        "event_id": event_id or f"u{user_id}-{event_type}-{offset}-{at.isoformat()}",
        "user_id": user_id,
        "event_type": event_type,
        "event_ts": event_ts,
        "plan_tier": plan_tier,
        "session_seconds": seconds,
        "payment_status": status,
        "source_key": f"events/raw/date={event_ts.date()}/fixture.parquet",
    }


EVENTS = [
    # 1: every window boundary. In: A-89 (login, ticket), A-29 (payment), A-6 (session).
    #    Out: A-90 (ticket), A-30 (payment), A-7 (session).
    event(1, "login", -89),
    event(1, "support_ticket", -89),
    event(1, "support_ticket", -90),
    event(1, "payment", -29, status="failed"),
    event(1, "payment", -10, status="succeeded"),
    event(1, "payment", -30, status="failed"),
    event(1, "session", -6, seconds=120.0),
    event(1, "session", -3, seconds=60.0),
    event(1, "session", -7, seconds=999.0),
    # 2: only event is a login at A-90: not in the population.
    event(2, "login", -90),
    # 3: no login, sessions and payments only outside their windows.
    event(3, "session", -40, "standard", seconds=300.0),
    event(3, "payment", -45, "standard", status="failed"),
    # 4: login just outside the lookback, another event inside it.
    event(4, "login", -90),
    event(4, "support_ticket", -10),
    # 5: cancelled long before the lookback, active since: not in the population.
    event(5, "cancel", -200),
    event(5, "login", -10),
    event(5, "session", -2, seconds=50.0),
    # 6: cancels on A itself: not in the population.
    event(6, "login", -3),
    event(6, "cancel", 0, at=dt.time(23)),
    # 7: login at the first instant of A; cancels on the last day of the label window.
    event(7, "login", 0, "premium", at=dt.time(0)),
    event(7, "cancel", 28, "premium", at=dt.time(23, 59, 59)),
    # 8: cancels the day after the label window.
    event(8, "login", -1, "standard"),
    event(8, "cancel", 29, "standard"),
    # 9: plan changes. On A-2 the latest event_ts wins, then the greatest event_id;
    #    everything after A (new plan, session, payment, ticket, login) is ignored.
    event(9, "login", -20),
    event(9, "session", -2, "premium", at=dt.time(8), seconds=60.0, event_id="u9-z"),
    event(9, "login", -2, "premium", at=dt.time(10), event_id="u9-a"),
    event(9, "login", -2, "standard", at=dt.time(10), event_id="u9-b"),
    event(9, "session", 1, "premium", seconds=5000.0),
    event(9, "payment", 1, "premium", status="failed"),
    event(9, "support_ticket", 2, "premium"),
    event(9, "login", 3, "premium"),
    # 10: login in the last microsecond of A; a session in the first second after A.
    event(10, "login", 0, at=dt.time(23, 59, 59, 999999)),
    event(10, "session", 1, "premium", at=dt.time(0), seconds=3000.0),
    # 11: first seen after A: not in the population.
    event(11, "login", 1),
    # 12: events outside the daily window: never loaded.
    event(12, "login", -300),
    event(12, "login", 40),
]

# user_id -> (days_since_last_login, payment_attempts_30d, payment_failures_30d,
#             payment_failure_rate, avg_session_length_7d, support_tickets_90d, plan_tier)
EXPECTED_FEATURES = {
    1: (89, 2, 1, 0.5, 90.0, 1, "basic"),
    3: (90, 0, 0, 0.0, 0.0, 0, "standard"),
    4: (90, 0, 0, 0.0, 0.0, 1, "basic"),
    7: (0, 0, 0, 0.0, 0.0, 0, "premium"),
    8: (1, 0, 0, 0.0, 0.0, 0, "standard"),
    9: (2, 0, 0, 0.0, 60.0, 0, "standard"),
    10: (0, 0, 0, 0.0, 0.0, 0, "basic"),
}
EXPECTED_CHURNED = {user_id: 0 for user_id in EXPECTED_FEATURES} | {7: 1}


# --- helpers -------------------------------------------------------------------


def warehouse_path(data_dir: Path) -> Path:
    return data_dir / "warehouse.duckdb"


def create_raw_events(data_dir: Path, events: list[dict]) -> None:
    data_dir.mkdir(parents=True)
    with duckdb.connect(str(warehouse_path(data_dir))) as con:
        con.execute(
            """
            create table raw_events (
                event_date date not null,
                event_id varchar not null,
                user_id bigint not null,
                event_type varchar not null,
                event_ts timestamp not null,
                plan_tier varchar,
                session_seconds double,
                payment_status varchar,
                source_key varchar not null
            )
            """
        )
        columns = list(events[0])
        con.executemany(
            f"insert into raw_events ({', '.join(columns)}) values ({', '.join('?' for _ in columns)})",
            [[row[column] for column in columns] for row in events],
        )


@dataclass(frozen=True)
class DbtRun:
    returncode: int
    output: str
    target_dir: Path


def run_dbt(data_dir: Path, *args: str, expect_success: bool = True, **dbt_vars) -> DbtRun:
    """Run the dbt CLI against the warehouse in data_dir, keeping target/ and logs/ in a fresh folder."""
    run_dir = data_dir / f"dbt_run_{next(_dbt_run_ids)}"
    command = [
        str(DBT_EXECUTABLE),
        *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", "duckdb",
        "--target-path", str(run_dir / "target"),
        "--log-path", str(run_dir / "logs"),
        "--vars", json.dumps(dbt_vars),
    ]
    env = {
        **os.environ,
        "CHURN_DATA_DIR": str(data_dir),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    run = DbtRun(completed.returncode, completed.stdout + completed.stderr, run_dir / "target")
    if expect_success:
        assert run.returncode == 0, run.output
    return run


def aggregate_daily_activity(data_dir: Path) -> None:
    """user_daily_activity of every day of DAILY_WINDOW, from raw_events."""
    with duckdb.connect(str(warehouse_path(data_dir))) as con:
        con.execute(DUCKDB_DDL)
        replace_days_on_duckdb(con, days(*DAILY_WINDOW))


def weekly_vars(first: dt.date, last: dt.date) -> dict:
    """Features and labels of the same as-of dates (the orchestrator labels four weeks back)."""
    window = {"min_as_of": first.isoformat(), "max_as_of": last.isoformat()}
    return {**window, **{f"label_{name}": value for name, value in window.items()}}


def query(data_dir: Path, sql: str, *params) -> list[tuple]:
    with duckdb.connect(str(warehouse_path(data_dir)), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def execute(data_dir: Path, sql: str, *params) -> None:
    with duckdb.connect(str(warehouse_path(data_dir))) as con:
        con.execute(sql, list(params))


def features_at(data_dir: Path, as_of: dt.date) -> dict[int, tuple]:
    rows = query(
        data_dir,
        f"select user_id, {', '.join(FEATURE_COLUMNS)} from user_features where as_of_date = ? order by user_id",
        as_of,
    )
    return {row[0]: row[1:] for row in rows}


def labels_at(data_dir: Path, as_of: dt.date) -> dict[int, int]:
    return dict(query(data_dir, "select user_id, churned from churn_labels where as_of_date = ?", as_of))


def as_of_dates(data_dir: Path, table: str) -> list[dt.date]:
    return [row[0] for row in query(data_dir, f"select distinct as_of_date from {table} order by 1")]


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The fixture events, built (models and dbt tests) for the daily window and the one week ending AS_OF."""
    data_dir = tmp_path_factory.mktemp("built") / "data"
    create_raw_events(data_dir, EVENTS)
    aggregate_daily_activity(data_dir)
    run_dbt(data_dir, "build", **weekly_vars(AS_OF, AS_OF))
    return data_dir


@pytest.fixture
def warehouse_copy(built, tmp_path) -> Path:
    """A private copy of the built warehouse, for tests that change data."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for path in built.glob("warehouse.duckdb*"):
        shutil.copy(path, data_dir / path.name)
    return data_dir


# --- semantics at one as-of date ----------------------------------------------


def test_features_match_known_answers(built):
    assert features_at(built, AS_OF) == EXPECTED_FEATURES


def test_labels_match_known_answers(built):
    assert labels_at(built, AS_OF) == EXPECTED_CHURNED


def test_column_types_match_the_contract(built):
    def types(table):
        return query(built, "select column_name, data_type from information_schema.columns "
                            "where table_name = ? order by ordinal_position", table)

    assert types("user_features") == [
        ("as_of_date", "DATE"), ("user_id", "BIGINT"), ("days_since_last_login", "INTEGER"),
        ("payment_attempts_30d", "INTEGER"), ("payment_failures_30d", "INTEGER"),
        ("payment_failure_rate", "DOUBLE"), ("avg_session_length_7d", "DOUBLE"),
        ("support_tickets_90d", "INTEGER"), ("plan_tier", "VARCHAR"),
    ]
    assert types("churn_labels") == [("as_of_date", "DATE"), ("user_id", "BIGINT"), ("churned", "INTEGER")]


def test_latest_event_of_a_day_breaks_timestamp_ties_by_event_id(built):
    assert query(
        built, "select last_event_ts, plan_tier from user_daily_activity where user_id = 9 and activity_date = ?", day(-2)
    ) == [(dt.datetime.combine(day(-2), dt.time(10)), "standard")]


def test_first_build_covers_only_its_windows(built):
    assert as_of_dates(built, "user_features") == [AS_OF]
    assert as_of_dates(built, "churn_labels") == [AS_OF]
    first, last = query(built, "select min(activity_date), max(activity_date) from user_daily_activity")[0]
    assert DAILY_WINDOW[0] <= first and last <= DAILY_WINDOW[1]
    assert query(built, "select count(*) from user_daily_activity where user_id = 12") == [(0,)]


# --- partitions, reruns, quality checks -----------------------------------------


def test_a_range_of_weeks_builds_every_sunday_in_it(warehouse_copy):
    run_dbt(warehouse_copy, "run", "--select", "user_features", "churn_labels", **weekly_vars(TWO_WEEKS_BEFORE, AS_OF))

    expected_dates = [TWO_WEEKS_BEFORE, WEEK_BEFORE, AS_OF]
    assert as_of_dates(warehouse_copy, "user_features") == expected_dates
    assert as_of_dates(warehouse_copy, "churn_labels") == expected_dates
    assert features_at(warehouse_copy, AS_OF) == EXPECTED_FEATURES


def test_rerunning_a_week_replaces_only_that_week(warehouse_copy):
    run_dbt(warehouse_copy, "run", "--select", "user_features", "churn_labels", **weekly_vars(TWO_WEEKS_BEFORE, AS_OF))
    before = (features_at(warehouse_copy, WEEK_BEFORE), labels_at(warehouse_copy, WEEK_BEFORE))
    assert before[0], "the rerun week must have rows for this test to mean anything"
    # Marker rows in the neighbouring weeks: a rerun that touched them would delete them.
    for as_of in (TWO_WEEKS_BEFORE, AS_OF):
        execute(warehouse_copy, "insert into user_features (as_of_date, user_id) values (?, -1)", as_of)
        execute(warehouse_copy, "insert into churn_labels (as_of_date, user_id) values (?, -1)", as_of)

    run_dbt(warehouse_copy, "run", "--select", "user_features", "churn_labels", **weekly_vars(WEEK_BEFORE, WEEK_BEFORE))

    assert (features_at(warehouse_copy, WEEK_BEFORE), labels_at(warehouse_copy, WEEK_BEFORE)) == before
    for table in ("user_features", "churn_labels"):
        assert query(warehouse_copy, f"select as_of_date from {table} where user_id = -1 order by 1") == [
            (TWO_WEEKS_BEFORE,), (AS_OF,)
        ]


def test_rerun_removes_rows_of_users_who_left_the_window(warehouse_copy):
    execute(warehouse_copy, "delete from raw_events where user_id = 1")

    aggregate_daily_activity(warehouse_copy)
    run_dbt(warehouse_copy, "run", **weekly_vars(AS_OF, AS_OF))

    assert query(warehouse_copy, "select count(*) from user_daily_activity where user_id = 1") == [(0,)]
    assert features_at(warehouse_copy, AS_OF) == {u: f for u, f in EXPECTED_FEATURES.items() if u != 1}
    assert labels_at(warehouse_copy, AS_OF) == {u: c for u, c in EXPECTED_CHURNED.items() if u != 1}


def test_uniqueness_check_fails_on_a_duplicated_key(warehouse_copy):
    execute(warehouse_copy, "insert into user_features select * from user_features where user_id = 1")

    result = run_dbt(warehouse_copy, "test", "--select", "user_features", expect_success=False)

    assert result.returncode == 1
    run_results = json.loads((result.target_dir / "run_results.json").read_text())
    failed = {r["unique_id"].split(".")[2] for r in run_results["results"] if r["status"] == "fail"}
    assert failed == {"unique_combination_of_columns_user_features_as_of_date__user_id"}


def test_an_as_of_date_that_is_not_a_sunday_is_rejected(tmp_path):
    result = run_dbt(tmp_path, "parse", expect_success=False, **weekly_vars(day(-6), AS_OF))

    assert result.returncode != 0
    assert "var min_as_of must be a Sunday" in result.output
