"""Blocking quality gates on the weekly training inputs (DESIGN.md §5).

Thresholds come from Settings (seed defaults, overridable with CHURN_GATE_* variables).
A failed gate stops everything downstream in its run and says which gate, with numbers.
"""

import datetime as dt

import dagster as dg

from churn_platform.constants import CHURN_LABELS, FEATURE_COLUMNS, USER_FEATURES, WAREHOUSE_POOL
from churn_platform.partitions import week_window
from churn_platform.resources.warehouse import DuckDBWarehouse


def feature_as_of_dates(time_window: dg.TimeWindow) -> list[dt.date]:
    return [monday + dt.timedelta(days=6) for monday in week_window(time_window).mondays()]


def label_as_of_dates(time_window: dg.TimeWindow) -> list[dt.date]:
    return [d - dt.timedelta(days=28) for d in feature_as_of_dates(time_window)]


def _result(passed: bool, per_date: dict[dt.date, dict], threshold: dict) -> dg.AssetCheckResult:
    metadata = {**threshold}
    for as_of, values in per_date.items():
        metadata.update({f"{name} ({as_of})": value for name, value in values.items()})
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


def _populations(con, table: str, dates: list[dt.date]) -> dict[dt.date, int]:
    counts = dict(
        con.execute(
            f"SELECT as_of_date, count(*) FROM {table} WHERE as_of_date BETWEEN ? AND ? GROUP BY 1",
            [min(dates), max(dates)],
        ).fetchall()
    )
    return {d: int(counts.get(d, 0)) for d in dates}


def null_rate_gate(con, dates: list[dt.date], max_null: float) -> dg.AssetCheckResult:
    """Null share of every feature column at each as-of date; fails above max_null."""
    rates = ", ".join(f"avg(CASE WHEN {c} IS NULL THEN 1.0 ELSE 0.0 END)" for c in FEATURE_COLUMNS)
    per_date = {}
    for as_of in dates:
        row = con.execute(f"SELECT {rates} FROM user_features WHERE as_of_date = ?", [as_of]).fetchone()
        per_date[as_of] = {f"null_rate_{c}": float(r or 0.0) for c, r in zip(FEATURE_COLUMNS, row)}
    worst = max(max(values.values()) for values in per_date.values())
    return _result(worst <= max_null, per_date, {"max_null_rate": max_null, "worst_null_rate": worst})


def build_feature_gates(weekly, thresholds: dict[str, float]) -> list[dg.AssetChecksDefinition]:
    min_rows = int(thresholds["min_training_rows"])
    max_null = thresholds["max_null_rate"]
    min_rate, max_rate = thresholds["min_churn_rate"], thresholds["max_churn_rate"]

    @dg.asset_check(asset=USER_FEATURES, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"Population at each as-of date is at least {min_rows} users.")
    def user_features_min_population(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
        dates = feature_as_of_dates(context.partition_time_window)
        with warehouse.connect(read_only=True) as con:
            counts = _populations(con, USER_FEATURES, dates)
        return _result(min(counts.values()) >= min_rows,
                       {d: {"population": n} for d, n in counts.items()}, {"min_rows": min_rows})

    @dg.asset_check(asset=USER_FEATURES, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"No feature column is more than {max_null:.0%} null.")
    def user_features_max_null_rate(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
        dates = feature_as_of_dates(context.partition_time_window)
        with warehouse.connect(read_only=True) as con:
            return null_rate_gate(con, dates, max_null)

    @dg.asset_check(asset=CHURN_LABELS, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"Labelled population is at least {min_rows} users.")
    def churn_labels_min_population(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
        dates = label_as_of_dates(context.partition_time_window)
        with warehouse.connect(read_only=True) as con:
            counts = _populations(con, CHURN_LABELS, dates)
        return _result(min(counts.values()) >= min_rows,
                       {d: {"population": n} for d, n in counts.items()}, {"min_rows": min_rows})

    @dg.asset_check(asset=CHURN_LABELS, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"28-day churn rate lies within [{min_rate:.1%}, {max_rate:.0%}].")
    def churn_labels_churn_rate(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
        dates = label_as_of_dates(context.partition_time_window)
        per_date = {}
        with warehouse.connect(read_only=True) as con:
            for as_of in dates:
                n, churners = con.execute(
                    "SELECT count(*), coalesce(sum(churned), 0) FROM churn_labels WHERE as_of_date = ?", [as_of]
                ).fetchone()
                per_date[as_of] = {"churn_rate": churners / n if n else 0.0, "population": int(n)}
        rates = [v["churn_rate"] for v in per_date.values()]
        passed = all(min_rate <= r <= max_rate for r in rates)
        return _result(passed, per_date, {"min_churn_rate": min_rate, "max_churn_rate": max_rate})

    return [user_features_min_population, user_features_max_null_rate,
            churn_labels_min_population, churn_labels_churn_rate]
