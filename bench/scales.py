"""Benchmark scales: how many users, which days, and which partitions get measured."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from churn_platform.windows import LABEL_WINDOW_DAYS
from churn_platform.dev.generator import GeneratorConfig
from churn_platform.windows import first_weekly_partition

END_DATE = dt.date(2024, 5, 26)  # a Sunday: the as-of date of the newest weekly partition
DEFAULT_DAYS = 126  # the fewest days that give a weekly partition K whose K-4 exists
SEED = 42


@dataclass(frozen=True)
class Scale:
    """One data size; the measured weekly partition K is the newest one."""

    name: str
    users: int
    days: int = DEFAULT_DAYS

    def __post_init__(self) -> None:
        if self.training_week < self.first_week:
            raise ValueError(f"{self.days} days are too few: partition {self.training_week} does not exist")

    @property
    def start_date(self) -> dt.date:
        return END_DATE - dt.timedelta(days=self.days - 1)

    @property
    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(users=self.users, days=self.days, end_date=END_DATE, seed=SEED)

    @property
    def as_of(self) -> dt.date:
        """A_K: the as-of date of the measured weekly partition K."""
        return END_DATE

    @property
    def label_as_of(self) -> dt.date:
        """A_K - 28: the as-of date K labels and trains on (the features of K-4)."""
        return END_DATE - dt.timedelta(days=LABEL_WINDOW_DAYS)

    @property
    def first_week(self) -> str:
        """The first weekly partition (its Monday)."""
        return first_weekly_partition(self.start_date).isoformat()

    @property
    def week(self) -> str:
        """K, keyed by its Monday."""
        return (self.as_of - dt.timedelta(days=6)).isoformat()

    @property
    def training_week(self) -> str:
        """K-4, whose features K's labels and training need."""
        return (self.label_as_of - dt.timedelta(days=6)).isoformat()


USERS = {"S": 20_000, "M": 100_000, "L": 1_000_000}
DEFAULT_SCALES = ("S", "M")
