"""Partitions and the time mappings between them (docs/contract.md §3).

Daily partitions are UTC dates of raw events. Weekly partitions are keyed by their Monday
and cover Monday..Sunday; the date arithmetic lives in `windows.py`.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from churn_platform.windows import (
    FEATURE_WINDOW_WEEKS,
    TRAINING_LAG_WEEKS,
    WeekWindow,
    first_weekly_partition,
)


def daily_partitions(start_date: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone="UTC")


def weekly_partitions(start_date: dt.date) -> dg.WeeklyPartitionsDefinition:
    return dg.WeeklyPartitionsDefinition(
        start_date=first_weekly_partition(start_date).isoformat(), day_offset=1, timezone="UTC"
    )


# user_features[K] reads daily activity of weeks K-12..K. Dagster's offsets count downstream
# (weekly) partitions, so lineage shows one day more than the SQL reads; nothing after A is mapped.
FEATURE_WINDOW_MAPPING = dg.TimeWindowPartitionMapping(start_offset=1 - FEATURE_WINDOW_WEEKS, end_offset=0)
# churn_labels[K] labels the as-of date A_K - 28 with cancels in (A_K - 28, A_K]: weeks K-3..K.
LABEL_WINDOW_MAPPING = dg.TimeWindowPartitionMapping(start_offset=1 - TRAINING_LAG_WEEKS, end_offset=0)
# churn_model[K] and churn_labels[K] use the features of week K-4, whose label window has closed.
TRAINING_FEATURES_MAPPING = dg.TimeWindowPartitionMapping(
    start_offset=-TRAINING_LAG_WEEKS,
    end_offset=-TRAINING_LAG_WEEKS,
    allow_nonexistent_upstream_partitions=True,
)


def week_window(time_window: dg.TimeWindow) -> WeekWindow:
    """WeekWindow of a weekly partition (range): Dagster windows end at the next Monday."""
    start = time_window.start.date()
    end = time_window.end.date() - dt.timedelta(days=7)
    try:
        return WeekWindow(first_monday=start, last_monday=end)
    except ValueError as err:
        raise ValueError(f"not a weekly Monday-keyed window: {time_window}") from err


def day_range(time_window: dg.TimeWindow) -> list[dt.date]:
    """Every UTC day in a daily partition (range) time window."""
    start, end = time_window.start.date(), time_window.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]
