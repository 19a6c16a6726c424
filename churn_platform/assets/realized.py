"""Realized performance: the scores published for an as-of date, once its labels have matured.

churn_labels[K] labels the as-of date four weeks back, the date churn_scores[K-4] scored. Joining
the two closes the loop: what the retention team was told against what happened, per model
version, beside the holdout AUC that version was promoted with.
"""

import dagster as dg

from churn_platform import automation
from churn_platform.checks.scores import realized_auc_result, realized_auc_spec
from churn_platform.constants import CHURN_LABELS, CHURN_SCORES, MODEL_GROUP, REALIZED_PERFORMANCE
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.partitions import TRAINING_FEATURES_MAPPING, week_window
from churn_platform.resources.mlflow_registry import MlflowRegistry
from churn_platform.resources.warehouse import Warehouse
from churn_platform.retries import EXTERNAL_SERVICE_RETRY

SCORES_WITH_LABELS_SQL = (
    "SELECT s.user_id, s.churn_probability, s.model_version, l.churned FROM churn_scores s "
    "JOIN churn_labels l ON s.as_of_date = l.as_of_date AND s.user_id = l.user_id WHERE s.as_of_date = ?"
)


def build_realized_performance(weekly, thresholds: GateThresholds) -> dg.AssetsDefinition:
    max_drop = thresholds.max_realized_auc_drop

    @dg.asset(
        name=REALIZED_PERFORMANCE,
        group_name=MODEL_GROUP,
        partitions_def=weekly,
        deps=[dg.AssetDep(CHURN_SCORES, partition_mapping=TRAINING_FEATURES_MAPPING), dg.AssetDep(CHURN_LABELS)],
        retry_policy=EXTERNAL_SERVICE_RETRY,
        automation_condition=automation.weekly_table(),
        kinds={"mlflow"},
        check_specs=[realized_auc_spec(max_drop)],
    )
    def realized_performance(context: dg.AssetExecutionContext, warehouse: Warehouse, mlflow: MlflowRegistry):
        """ROC AUC, top-decile lift and calibration of the scores published four weeks ago, on their
        matured labels, per model version; recorded on the version's MLflow run too."""
        from churn_platform.ml.realized import realized_performance as measure

        as_of = week_window(context.partition_time_window).training_as_of
        with warehouse.connect(read_only=True) as con:
            joined = con.execute(SCORES_WITH_LABELS_SQL, [as_of]).df()
        if joined.empty:
            raise dg.Failure(f"no churn_scores at as-of {as_of} have labels: score that week first",
                             allow_retries=False)
        results = measure(joined)
        versus = {}
        for result in results:
            holdout_auc = float(mlflow.model_version(result.model_version).tags["roc_auc"])
            versus[result.model_version] = (result.roc_auc, holdout_auc)
            mlflow.record_realized(result.model_version, as_of, result.metadata())
        main = max(results, key=lambda r: r.rows)
        yield dg.MaterializeResult(
            metadata={
                "as_of_date": as_of.isoformat(),
                "model_version": main.model_version,
                "rows": sum(r.rows for r in results),
                **main.metadata(),
                "holdout_roc_auc": versus[main.model_version][1],
                "realized_minus_holdout_auc": main.roc_auc - versus[main.model_version][1],
                "calibration": dg.MetadataValue.md(
                    "| predicted | rows | mean predicted | observed churn rate |\n|---|---|---|---|\n" + "\n".join(
                        f"| {b.lower:.1f}–{b.upper:.1f} | {b.count:,} | {b.mean_predicted:.3f} | {b.observed_rate:.3f} |"
                        for b in main.calibration.bins if b.count
                    )
                ),
            }
        )
        yield realized_auc_result(versus, max_drop)

    return realized_performance
