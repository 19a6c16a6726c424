"""Partition windows, dbt vars and the time mappings Dagster uses for lineage."""

import datetime as dt

import dagster as dg

from churn_platform.assets.dbt import weekly_vars
from churn_platform.partitions import (
    FEATURE_WINDOW_MAPPING,
    LABEL_WINDOW_MAPPING,
    TRAINING_FEATURES_MAPPING,
    daily_partitions,
    week_window,
    weekly_partitions,
)
from churn_platform.windows import first_weekly_partition

START = dt.date(2024, 1, 1)
DAILY = daily_partitions(START)
WEEKLY = weekly_partitions(START)
K = "2024-05-20"  # Monday; as-of A = 2024-05-26


def _window(partitions_def, first, last=None):
    start = partitions_def.time_window_for_partition_key(first).start
    end = partitions_def.time_window_for_partition_key(last or first).end
    return dg.TimeWindow(start, end)


def test_weekly_partitions_are_mondays_after_a_full_lookback():
    assert first_weekly_partition(START) == dt.date(2024, 3, 25)  # 84 days after the start
    keys = WEEKLY.get_partition_keys(current_time=dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc))
    assert keys[0] == "2024-03-25" and keys[-1] == K
    assert all(dt.date.fromisoformat(k).weekday() == 0 for k in keys)


def test_vars_for_one_week_and_a_range():
    weeks = week_window(_window(WEEKLY, K))
    assert (weeks.first_as_of, weeks.last_as_of) == (dt.date(2024, 5, 26), dt.date(2024, 5, 26))
    assert weekly_vars(weeks) == {
        "min_as_of": "2024-05-26", "max_as_of": "2024-05-26",
        "label_min_as_of": "2024-04-28", "label_max_as_of": "2024-04-28",
    }
    weeks = week_window(_window(WEEKLY, "2024-05-06", K))
    assert weekly_vars(weeks) == {
        "min_as_of": "2024-05-12", "max_as_of": "2024-05-26",
        "label_min_as_of": "2024-04-14", "label_max_as_of": "2024-04-28",
    }


def _upstream_days(mapping, key):
    subset = WEEKLY.subset_with_partition_keys([key])
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        subset, WEEKLY, DAILY, current_time=dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
    )
    days = sorted(result.partitions_subset.get_partition_keys())
    return days[0], days[-1], len(days)


def test_features_map_to_the_lookback_and_never_past_the_as_of_date():
    first, last, n = _upstream_days(FEATURE_WINDOW_MAPPING, K)
    assert last == "2024-05-26"  # A: nothing later
    assert (first, n) == ("2024-02-26", 91)  # whole weeks cover the 90-day window [A-89, A]


def test_labels_map_exactly_to_their_28_day_window():
    first, last, n = _upstream_days(LABEL_WINDOW_MAPPING, K)
    assert (first, last, n) == ("2024-04-29", "2024-05-26", 28)  # (A_K - 28, A_K]


def test_training_reads_the_week_four_weeks_earlier():
    subset = WEEKLY.subset_with_partition_keys([K])
    result = TRAINING_FEATURES_MAPPING.get_upstream_mapped_partitions_result_for_partitions(
        subset, WEEKLY, WEEKLY, current_time=dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
    )
    assert result.partitions_subset.get_partition_keys() == ["2024-04-22"]
