"""Weekly date arithmetic (docs/contract.md §3): the one home of every window length.

A weekly partition is keyed by its Monday and stands for its Sunday, the as-of date A.
Features look back over [A-89, A]; the label of A counts cancels in (A, A+28]; weekly
partition K labels, and trains on, the as-of date A_K - 28 whose label window closes at A_K.
The dbt models read the same lengths from `dbt_project.yml` vars (a test keeps them equal).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

LOOKBACK_DAYS = 90
PAYMENT_WINDOW_DAYS = 30
SESSION_WINDOW_DAYS = 7
LABEL_WINDOW_DAYS = 28
TRAINING_LAG_WEEKS = LABEL_WINDOW_DAYS // 7
# The lookback in whole weeks, as lineage can show it (13 weeks: one day more than is read).
FEATURE_WINDOW_WEEKS = -(-LOOKBACK_DAYS // 7)

_WEEK = dt.timedelta(days=7)
_SUNDAY_OFFSET = dt.timedelta(days=6)
_LABEL_LAG = dt.timedelta(days=LABEL_WINDOW_DAYS)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day of [first, last]."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def first_weekly_partition(start_date: dt.date) -> dt.date:
    """First Monday whose whole-week feature window starts on or after start_date."""
    earliest = start_date + _WEEK * FEATURE_WINDOW_WEEKS - _WEEK
    return earliest + dt.timedelta(days=(7 - earliest.weekday()) % 7)


def newest_complete_monday(last_day: dt.date) -> dt.date:
    """Monday of the newest week whose Sunday is on or before last_day."""
    sunday = last_day - dt.timedelta(days=(last_day.weekday() + 1) % 7)
    return sunday - _SUNDAY_OFFSET


@dataclass(frozen=True)
class WeekWindow:
    """The dates one weekly partition, or a range of them, stands for."""

    first_monday: dt.date
    last_monday: dt.date

    def __post_init__(self):
        if self.first_monday.weekday() != 0 or self.last_monday.weekday() != 0:
            raise ValueError(f"weekly partitions start on Mondays: {self.first_monday}, {self.last_monday}")
        if self.last_monday < self.first_monday:
            raise ValueError(f"empty week window {self.first_monday}..{self.last_monday}")

    @classmethod
    def of(cls, monday: dt.date) -> WeekWindow:
        return cls(monday, monday)

    @property
    def first_as_of(self) -> dt.date:
        return self.first_monday + _SUNDAY_OFFSET

    @property
    def last_as_of(self) -> dt.date:
        return self.last_monday + _SUNDAY_OFFSET

    def mondays(self) -> list[dt.date]:
        return days(self.first_monday, self.last_monday)[::7]

    def as_of_dates(self) -> list[dt.date]:
        """The Sundays whose features this window builds."""
        return [monday + _SUNDAY_OFFSET for monday in self.mondays()]

    def label_as_of_dates(self) -> list[dt.date]:
        """The as-of dates whose labels close in this window (LABEL_WINDOW_DAYS earlier)."""
        return [as_of - _LABEL_LAG for as_of in self.as_of_dates()]

    @property
    def label_as_of_range(self) -> tuple[dt.date, dt.date]:
        dates = self.label_as_of_dates()
        return dates[0], dates[-1]

    @property
    def training_as_of(self) -> dt.date:
        """The as-of date the newest week trains on: its label window closed at last_as_of."""
        return self.last_as_of - _LABEL_LAG

    @property
    def feature_input_days(self) -> tuple[dt.date, dt.date]:
        """Days of activity the features read: [first A - 89, last A]."""
        return self.first_as_of - dt.timedelta(days=LOOKBACK_DAYS - 1), self.last_as_of

    @property
    def label_input_days(self) -> tuple[dt.date, dt.date]:
        """Days of activity the labels read: (first label A, last label A + 28]."""
        first, last = self.label_as_of_range
        return first + dt.timedelta(days=1), last + _LABEL_LAG
