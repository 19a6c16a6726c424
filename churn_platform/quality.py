"""Quality metrics of the weekly tables, one query per table (docs/contract.md §5).

The same numbers feed the assets' metadata (plotted across partitions) and the blocking
gates, so what the UI plots is exactly what the gate judged.
"""

from __future__ import annotations

import datetime as dt

from churn_platform.constants import FEATURE_COLUMNS

NUMERIC_FEATURES = tuple(c for c in FEATURE_COLUMNS if c != "plan_tier")


def feature_metrics(con, as_of_dates: list[dt.date]) -> dict[dt.date, dict[str, float]]:
    """Per as-of date: population, the null rate of every feature and the mean of each number.

    A date without rows has population 0 and no other metric.
    """
    selects = ", ".join(
        [f"avg({c}) AS mean_{c}" for c in NUMERIC_FEATURES]
        + [f"avg(CASE WHEN {c} IS NULL THEN 1.0 ELSE 0.0 END) AS null_rate_{c}" for c in FEATURE_COLUMNS]
    )
    rows = con.execute(
        f"SELECT as_of_date, count(*) AS population, {selects} FROM user_features "
        f"WHERE as_of_date IN ({_date_list(as_of_dates)}) GROUP BY as_of_date"
    ).fetchall()
    names = [d[0] for d in con.description][1:]
    found = {row[0]: _numbers(names, row[1:]) for row in rows}
    return {as_of: found.get(as_of, {"population": 0}) for as_of in as_of_dates}


def label_metrics(con, as_of_dates: list[dt.date]) -> dict[dt.date, dict[str, float]]:
    """Per label as-of date: labelled population, churners and churn rate (0 without rows)."""
    rows = con.execute(
        "SELECT as_of_date, count(*), coalesce(sum(churned), 0) FROM churn_labels "
        f"WHERE as_of_date IN ({_date_list(as_of_dates)}) GROUP BY as_of_date"
    ).fetchall()
    found = {as_of: (int(n), int(churners)) for as_of, n, churners in rows}
    metrics = {}
    for as_of in as_of_dates:
        population, churners = found.get(as_of, (0, 0))
        metrics[as_of] = {
            "population": population,
            "churners": churners,
            "churn_rate": churners / population if population else 0.0,
        }
    return metrics


def _date_list(as_of_dates: list[dt.date]) -> str:
    """Date literals both engines read (dates are ours, never user text)."""
    return ", ".join(f"DATE '{d.isoformat()}'" for d in as_of_dates)


def _numbers(names: list[str], values) -> dict[str, float]:
    """Metric values as numbers; an empty column's mean (NULL) is reported as NaN, never 0."""
    numbers = {name: float("nan") if value is None else float(value) for name, value in zip(names, values)}
    numbers["population"] = int(numbers["population"])
    return numbers
