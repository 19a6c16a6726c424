"""user_daily_activity: day batches, a day never ingested refused, and its check against the ledger."""

import datetime as dt

import dagster as dg
import duckdb

from churn_platform.assets.daily_activity import MATCHES_RAW_EVENTS_CHECK, day_batches
from churn_platform.constants import USER_DAILY_ACTIVITY
from churn_platform_tests.helpers import DEMO_END, execute_assets, failure_message

D1, D2, D3, D4 = (dt.date(2024, 1, 1) + dt.timedelta(days=n) for n in range(4))


def test_days_go_in_batches_of_about_the_row_budget_and_a_day_is_never_split():
    rows = {D3: 40, D1: 60, D2: 50, D4: 500}
    assert day_batches(rows, 100) == [[D1], [D2, D3], [D4]]
    assert day_batches(rows, 10_000) == [[D1, D2, D3, D4]]
    assert day_batches({}, 100) == []


def test_a_day_never_ingested_fails_naming_it_and_writes_nothing(settings):
    with dg.DagsterInstance.ephemeral() as instance:
        result = execute_assets(settings, [USER_DAILY_ACTIVITY], instance, partition=D2.isoformat())
    assert not result.success
    message = failure_message(result, USER_DAILY_ACTIVITY)
    assert "raw_events not ingested for 1 day(s): 2024-01-02" in message


def test_the_check_fails_naming_a_day_whose_events_do_not_add_up_to_its_ledger(demo_settings):
    day = DEMO_END - dt.timedelta(days=1)
    with duckdb.connect(str(demo_settings.warehouse_path)) as con:
        [(rows,)] = con.execute("SELECT rows FROM ingested_days WHERE event_date = ?", [day]).fetchall()
        # An event lost after the ledger counted it: the aggregate can no longer add up.
        con.execute("DELETE FROM raw_events WHERE event_id = (SELECT min(event_id) FROM raw_events "
                    "WHERE event_date = ?)", [day])
    with dg.DagsterInstance.ephemeral() as instance:
        result = execute_assets(demo_settings, [USER_DAILY_ACTIVITY], instance, partition=day.isoformat())
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == MATCHES_RAW_EVENTS_CHECK]
    assert not evaluation.passed
    assert evaluation.metadata["wrong"].value == {day.isoformat(): {"raw_events_rows": rows, "events_counted": rows - 1}}
