"""The model's quality gate (docs/contract.md §5): holdout ROC AUC at or above the floor.

Evaluated by `churn_model` in its own step (the AUC only exists once the model is trained);
blocking, so a weak model never reaches promotion.
"""

import dagster as dg

from churn_platform.constants import CHURN_MODEL

AUC_FLOOR_CHECK = "churn_model_auc_floor"


def auc_floor_spec(min_auc: float) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(AUC_FLOOR_CHECK, asset=CHURN_MODEL, blocking=True,
                             description=f"Holdout ROC AUC is at least {min_auc}.")


def auc_floor_result(auc: float, min_auc: float, model_version: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=AUC_FLOOR_CHECK,
        passed=auc >= min_auc,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"roc_auc": auc, "min_auc": min_auc, "model_version": model_version},
    )
