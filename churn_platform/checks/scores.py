"""Warnings on the scores (docs/contract.md §5): population drift and realized performance. Never gates.

The scores are still published when the population moved: the retention team needs them this
week, and the warning (with the shifted features named) tells them how far to trust them and
the data team that a retraining or a look upstream is due.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from churn_platform.constants import CHURN_SCORES, REALIZED_PERFORMANCE

if TYPE_CHECKING:
    from churn_platform.ml.drift import DriftReport

POPULATION_DRIFT_CHECK = "churn_scores_population_drift"


def population_drift_spec(max_psi: float) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        POPULATION_DRIFT_CHECK, asset=CHURN_SCORES, blocking=False,
        description=(f"No feature and not the score has a population stability index above {max_psi} "
                     "against the champion's training population (CHURN_GATE_MAX_PSI)."),
    )


def population_drift_result(drift: DriftReport, champion_version: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=POPULATION_DRIFT_CHECK,
        passed=drift.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=drift.summary(),
        metadata={
            **drift.metadata(),
            "max_psi": drift.max_psi,
            "drifted": ", ".join(drift.drifted) or "none",
            "champion_version": champion_version,
        },
    )


REALIZED_AUC_CHECK = "realized_performance_auc"


def realized_auc_spec(max_drop: float) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REALIZED_AUC_CHECK, asset=REALIZED_PERFORMANCE, blocking=False,
        description=(f"The realized ROC AUC of the published scores is at most {max_drop} below the holdout "
                     "AUC their model version was promoted with (CHURN_GATE_MAX_REALIZED_AUC_DROP)."),
    )


def realized_auc_result(realized: dict[str, tuple[float, float]], max_drop: float) -> dg.AssetCheckResult:
    """`realized`: model version -> (realized AUC, holdout AUC)."""
    fallen = {v: (r, h) for v, (r, h) in realized.items() if r < h - max_drop}
    return dg.AssetCheckResult(
        check_name=REALIZED_AUC_CHECK,
        passed=not fallen,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(
            f"v{v}: realized AUC {r:.4f} vs holdout {h:.4f} ({r - h:+.4f})" for v, (r, h) in realized.items()
        ),
        metadata={"max_realized_auc_drop": max_drop, "below": ", ".join(f"v{v}" for v in fallen) or "none"},
    )
