"""Blocking gates on the weekly features and labels (docs/contract.md §5).

A range run checks every as-of date in it; a failed gate stops everything downstream in
its run and says which gate failed, with the numbers (from `quality.py`, the same numbers
the assets' metadata plots). Dagster records a partitioned check's result per week only in a
run of one partition; in a range run each week's verdict is logged too, so automation
(`automation.py`) knows which weeks passed.
"""

import datetime as dt

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

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


def record_each_week(context: dg.AssetCheckExecutionContext, check_key: dg.AssetCheckKey,
                     result: dg.AssetCheckResult, gate, per_date: dict[dt.date, dict],
                     week_of: dict[dt.date, str]) -> dg.AssetCheckResult:
    """In a range run, log the gate's verdict for each week (its own as-of dates only)."""
    if context.has_partition_key:
        return result
    for as_of, values in per_date.items():
        week = week_of[as_of]
        verdict = gate({as_of: values})
        [latest] = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=check_key.asset_key, asset_partitions=[week]), limit=1).records
        context.op_execution_context.log_event(dg.AssetCheckEvaluation(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=verdict.passed, partition=week,
            metadata=verdict.metadata, blocking=True, severity=dg.AssetCheckSeverity.ERROR,
            target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp)))
    return result


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

    def features_of(context, warehouse: Warehouse) -> tuple[dict[dt.date, dict], dict[dt.date, str]]:
        weeks = week_window(context.partition_time_window)
        with warehouse.connect(read_only=True) as con:
            per_date = feature_metrics(con, weeks.as_of_dates())
        return per_date, dict(zip(weeks.as_of_dates(), (m.isoformat() for m in weeks.mondays())))

    def labels_of(context, warehouse: Warehouse) -> tuple[dict[dt.date, dict], dict[dt.date, str]]:
        weeks = week_window(context.partition_time_window)
        with warehouse.connect(read_only=True) as con:
            per_date = label_metrics(con, weeks.label_as_of_dates())
        return per_date, dict(zip(weeks.label_as_of_dates(), (m.isoformat() for m in weeks.mondays())))

    def gates(asset: str, name: str, checks: dict, metrics_of) -> dg.AssetChecksDefinition:
        """One step for all of an asset's gates: the warehouse is read once (on Spark, one SQL
        session, not one per gate) and each selected gate is judged on the same numbers."""
        specs = [dg.AssetCheckSpec(check, asset=asset, blocking=True, partitions_def=weekly, description=text)
                 for check, (text, _) in checks.items()]

        @dg.multi_asset_check(name=name, specs=specs, can_subset=True, pool=WAREHOUSE_POOL)
        def judge(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
            per_date, week_of = metrics_of(context, warehouse)
            for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
                gate = checks[key.name][1]
                verdict = gate(per_date)
                yield record_each_week(context, key, dg.AssetCheckResult(
                    asset_key=key.asset_key, check_name=key.name, passed=verdict.passed,
                    severity=verdict.severity, metadata=verdict.metadata), gate, per_date, week_of)

        return judge

    return [
        gates(USER_FEATURES, "user_features_gates", {
            "user_features_min_population": (f"Population at each as-of date is at least {min_rows} users.",
                                             lambda d: population_gate(d, min_rows)),
            "user_features_max_null_rate": (f"No feature column is more than {max_null:.0%} null.",
                                            lambda d: null_rate_gate(d, max_null)),
        }, features_of),
        gates(CHURN_LABELS, "churn_labels_gates", {
            "churn_labels_min_population": (f"Labelled population is at least {min_rows} users.",
                                            lambda d: population_gate(d, min_rows)),
            "churn_labels_churn_rate": (f"Churn rate lies within [{min_rate:.1%}, {max_rate:.0%}].",
                                        lambda d: churn_rate_gate(d, min_rate, max_rate)),
        }, labels_of),
    ]
