"""Weekly date arithmetic, and the window lengths dbt reads kept equal to Python's."""

import datetime as dt

import pytest
import yaml

from churn_platform import windows
from churn_platform.settings import DBT_PROJECT_DIR
from churn_platform.windows import WeekWindow, newest_complete_monday

K = dt.date(2024, 5, 20)  # Monday; as-of A = 2024-05-26


def test_one_week_stands_for_its_sunday_and_the_sunday_its_labels_close():
    week = WeekWindow.of(K)
    assert week.as_of_dates() == [dt.date(2024, 5, 26)]
    assert week.label_as_of_dates() == [dt.date(2024, 4, 28)]
    assert week.training_as_of == dt.date(2024, 4, 28)
    assert week.feature_input_days == (dt.date(2024, 2, 27), dt.date(2024, 5, 26))  # [A-89, A]
    assert week.label_input_days == (dt.date(2024, 4, 29), dt.date(2024, 5, 26))  # (A-28, A]


def test_a_range_of_weeks():
    weeks = WeekWindow(dt.date(2024, 5, 6), K)
    assert weeks.mondays() == [dt.date(2024, 5, 6), dt.date(2024, 5, 13), K]
    assert weeks.label_as_of_range == (dt.date(2024, 4, 14), dt.date(2024, 4, 28))
    assert weeks.feature_input_days[0] == dt.date(2024, 2, 13)


@pytest.mark.parametrize("first, last", [(dt.date(2024, 5, 21), dt.date(2024, 5, 21)), (K, K - dt.timedelta(7))])
def test_not_a_week_window_is_an_error(first, last):
    with pytest.raises(ValueError):
        WeekWindow(first, last)


def test_newest_complete_monday():
    assert newest_complete_monday(dt.date(2024, 5, 26)) == K  # a Sunday: its own week
    assert newest_complete_monday(dt.date(2024, 5, 25)) == K - dt.timedelta(7)


def test_dbt_reads_the_same_window_lengths():
    """One fact in two languages: dbt_project.yml's vars must equal windows.py."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    assert {name: project["vars"][name] for name in
            ("lookback_days", "payment_window_days", "session_window_days", "label_window_days")} == {
        "lookback_days": windows.LOOKBACK_DAYS,
        "payment_window_days": windows.PAYMENT_WINDOW_DAYS,
        "session_window_days": windows.SESSION_WINDOW_DAYS,
        "label_window_days": windows.LABEL_WINDOW_DAYS,
    }
