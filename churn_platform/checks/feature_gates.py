"""Blocking gates on the weekly features and labels (docs/contract.md §5).

A range run checks every as-of date in it; a failed gate stops everything downstream in
its run and says which gate failed, with the numbers (from `quality.py`, the same numbers
the assets' metadata plots).
"""

import datetime as dt

import dagster as dg

from churn_platform.constants import CHURN_LABELS, USER_FEATURES, WAREHOUSE_POOL
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.partitions import week_window
from churn_platform.quality import feature_metrics, label_metrics
from churn_platform.resources.warehouse import Warehouse


def _result(passed: bool, per_date: dict[dt.date, dict], threshold: dict) -> dg.AssetCheckResult:
    metadata = {**threshold}
    for as_of, values in per_date.items():
        metadata.update({f"{name} ({as_of})": value for name, value in values.items()})
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


def population_gate(per_date: dict[dt.date, dict], min_rows: int) -> dg.AssetCheckResult:
    """Every as-of date has at least min_rows rows."""
    populations = {as_of: {"population": m["population"]} for as_of, m in per_date.items()}
    passed = min(p["population"] for p in populations.values()) >= min_rows
    return _result(passed, populations, {"min_rows": min_rows})


def null_rate_gate(per_date: dict[dt.date, dict], max_null: float) -> dg.AssetCheckResult:
    """No feature column is more than max_null null at any as-of date (empty dates have no rate)."""
    rates = {as_of: {k: v for k, v in m.items() if k.startswith("null_rate_")} for as_of, m in per_date.items()}
    worst = max((rate for values in rates.values() for rate in values.values()), default=0.0)
    return _result(worst <= max_null, rates, {"max_null_rate": max_null, "worst_null_rate": worst})


def churn_rate_gate(per_date: dict[dt.date, dict], min_rate: float, max_rate: float) -> dg.AssetCheckResult:
    """The label rate of every as-of date lies within [min_rate, max_rate]."""
    passed = all(min_rate <= m["churn_rate"] <= max_rate for m in per_date.values())
    shown = {d: {"churn_rate": m["churn_rate"], "population": m["population"]} for d, m in per_date.items()}
    return _result(passed, shown, {"min_churn_rate": min_rate, "max_churn_rate": max_rate})


def build_feature_gates(weekly, thresholds: GateThresholds) -> list[dg.AssetChecksDefinition]:
    min_rows = thresholds.min_training_rows
    max_null = thresholds.max_null_rate
    min_rate, max_rate = thresholds.min_churn_rate, thresholds.max_churn_rate

    def features_of(context, warehouse: Warehouse) -> dict[dt.date, dict]:
        with warehouse.connect(read_only=True) as con:
            return feature_metrics(con, week_window(context.partition_time_window).as_of_dates())

    def labels_of(context, warehouse: Warehouse) -> dict[dt.date, dict]:
        with warehouse.connect(read_only=True) as con:
            return label_metrics(con, week_window(context.partition_time_window).label_as_of_dates())

    @dg.asset_check(asset=USER_FEATURES, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"Population at each as-of date is at least {min_rows} users.")
    def user_features_min_population(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        return population_gate(features_of(context, warehouse), min_rows)

    @dg.asset_check(asset=USER_FEATURES, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"No feature column is more than {max_null:.0%} null.")
    def user_features_max_null_rate(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        return null_rate_gate(features_of(context, warehouse), max_null)

    @dg.asset_check(asset=CHURN_LABELS, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"Labelled population is at least {min_rows} users.")
    def churn_labels_min_population(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        return population_gate(labels_of(context, warehouse), min_rows)

    @dg.asset_check(asset=CHURN_LABELS, blocking=True, partitions_def=weekly, pool=WAREHOUSE_POOL,
                    description=f"Churn rate lies within [{min_rate:.1%}, {max_rate:.0%}].")
    def churn_labels_churn_rate(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
        return churn_rate_gate(labels_of(context, warehouse), min_rate, max_rate)

    return [user_features_min_population, user_features_max_null_rate,
            churn_labels_min_population, churn_labels_churn_rate]
