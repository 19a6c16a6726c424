"""Did the scores come true? Published scores of an as-of date joined with its matured labels.

Four weeks after an as-of date its churn labels are known; the scores published for that date
then get the same measures as a holdout: ROC AUC, top-decile lift, calibration. Measured per
model version (a week is normally scored by one champion) and compared with the holdout AUC
the version was promoted with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from churn_platform.constants import LABEL_COLUMN
from churn_platform.ml.evaluation import Calibration, calibration_report, lift_table


@dataclass(frozen=True)
class RealizedPerformance:
    """How one model version's published scores for one as-of date did against what happened."""

    model_version: str
    rows: int
    churn_rate: float
    roc_auc: float
    top_decile_lift: float
    calibration: Calibration

    def metadata(self) -> dict[str, float]:
        return {
            "realized_roc_auc": self.roc_auc,
            "realized_top_decile_lift": self.top_decile_lift,
            "realized_brier_score": self.calibration.brier_score,
            "realized_churn_rate": self.churn_rate,
            "mean_churn_probability": float(
                sum(b.mean_predicted * b.count for b in self.calibration.bins if b.count) / self.rows
            ),
        }


def realized_performance(joined: pd.DataFrame) -> list[RealizedPerformance]:
    """One result per model version in `joined` (user_id, churn_probability, model_version, churned).

    A version whose scored users all stayed (or all left) has no AUC: that raises, since a
    number here would be invented.
    """
    missing = {"churn_probability", "model_version", LABEL_COLUMN} - set(joined.columns)
    if missing:
        raise ValueError(f"scores joined with labels lack columns {sorted(missing)}")
    if joined.empty:
        raise ValueError("no published score has a matured label")
    results = []
    for version, rows in joined.groupby("model_version", sort=True):
        y = rows[LABEL_COLUMN].to_numpy(dtype=np.int64)
        p = rows["churn_probability"].to_numpy(dtype=np.float64)
        if y.min() == y.max():
            raise ValueError(f"the {len(y)} users scored by v{version} all have label {y[0]}: AUC is undefined")
        results.append(
            RealizedPerformance(
                model_version=str(version),
                rows=len(y),
                churn_rate=float(y.mean()),
                roc_auc=float(roc_auc_score(y, p)),
                top_decile_lift=lift_table(y, p).top_decile_lift,
                calibration=calibration_report(y, p),
            )
        )
    return results
