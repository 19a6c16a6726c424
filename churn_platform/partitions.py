"""Partitions and the time mappings between them (DESIGN.md §3).

Daily partitions are UTC dates of raw events. Weekly partitions are keyed by their
Monday and cover Monday..Sunday; the as-of date A is the Sunday. The first weekly
partition is the first whose 90-day feature window lies inside the data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from churn_platform.constants import LABEL_WINDOW_DAYS, LOOKBACK_DAYS, TRAINING_LAG_WEEKS

# Feature window [A-89, A] in whole weeks: 13 weeks back from the Monday, i.e. days
# [A-90, A]. Dagster's offsets count downstream (weekly) partitions, so lineage shows one
# day more than the SQL reads; nothing after A is ever mapped.
FEATURE_WINDOW_WEEKS = -(-LOOKBACK_DAYS // 7)


def first_weekly_partition(start_date: dt.date) -> dt.date:
    """First Monday M whose feature window [M+6-89, M+6] lies on or after start_date."""
    earliest = start_date + dt.timedelta(days=7 * FEATURE_WINDOW_WEEKS - 7)
    return earliest + dt.timedelta(days=(7 - earliest.weekday()) % 7)


def daily_partitions(start_date: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone="UTC")


def weekly_partitions(start_date: dt.date) -> dg.WeeklyPartitionsDefinition:
    return dg.WeeklyPartitionsDefinition(
        start_date=first_weekly_partition(start_date).isoformat(), day_offset=1, timezone="UTC"
    )


# user_features[K] reads daily activity of weeks K-12..K (days A-90..A).
FEATURE_WINDOW_MAPPING = dg.TimeWindowPartitionMapping(
    start_offset=1 - FEATURE_WINDOW_WEEKS, end_offset=0
)
# churn_labels[K] labels the as-of date A_K - 28 with cancels in (A_K - 28, A_K]: weeks K-3..K.
LABEL_WINDOW_MAPPING = dg.TimeWindowPartitionMapping(
    start_offset=1 - LABEL_WINDOW_DAYS // 7, end_offset=0
)
# churn_model[K] and churn_labels[K] use the features of week K-4, whose label window has closed.
TRAINING_FEATURES_MAPPING = dg.TimeWindowPartitionMapping(
    start_offset=-TRAINING_LAG_WEEKS,
    end_offset=-TRAINING_LAG_WEEKS,
    allow_nonexistent_upstream_partitions=True,
)


@dataclass(frozen=True)
class WeekWindow:
    """The dates one weekly partition (or range of them) stands for."""

    first_monday: dt.date
    last_monday: dt.date

    @property
    def first_as_of(self) -> dt.date:
        return self.first_monday + dt.timedelta(days=6)

    @property
    def last_as_of(self) -> dt.date:
        return self.last_monday + dt.timedelta(days=6)

    @property
    def label_as_of_range(self) -> tuple[dt.date, dt.date]:
        """As-of dates whose labels close in this window (28 days earlier)."""
        lag = dt.timedelta(days=LABEL_WINDOW_DAYS)
        return self.first_as_of - lag, self.last_as_of - lag

    def mondays(self) -> list[dt.date]:
        weeks = (self.last_monday - self.first_monday).days // 7
        return [self.first_monday + dt.timedelta(weeks=i) for i in range(weeks + 1)]


def week_window(time_window: dg.TimeWindow) -> WeekWindow:
    """WeekWindow for a weekly partition (range): Dagster windows end at the next Monday."""
    start = time_window.start.date()
    end = time_window.end.date() - dt.timedelta(days=7)
    if start.weekday() != 0 or end < start:
        raise ValueError(f"not a weekly Monday-keyed window: {time_window}")
    return WeekWindow(first_monday=start, last_monday=end)


def day_range(time_window: dg.TimeWindow) -> list[dt.date]:
    """Every UTC day in a daily partition (range) time window."""
    start, end = time_window.start.date(), time_window.end.date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]
