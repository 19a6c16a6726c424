"""Population drift on churn_scores (docs/contract.md §5): a warning, never a gate.

The scores are still published when the population moved: the retention team needs them this
week, and the warning (with the shifted features named) tells them how far to trust them and
the data team that a retraining or a look upstream is due.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from churn_platform.constants import CHURN_SCORES

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
