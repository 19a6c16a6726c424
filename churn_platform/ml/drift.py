"""Population drift: has this week's population moved away from the one the champion learned from?

The reference is the champion's holdout: a fifth of its training week's users, chosen by a
seeded hash of the user id, never seen by the fit. It stands for the champion's training
population (same week, same users' distribution) and is already stored and checksummed with
every version, so drift needs no second copy of the training set. The champion's scores on
those rows are the reference for the score distribution: unbiased, unlike scores on rows it
was fitted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn_platform.ml.evaluation import drifted_columns, numeric_psi, psi_by_column
from churn_platform.ml.training import prepare_features

SCORE = "churn_probability"


def feature_psi(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """PSI of every model feature (contract order), both frames prepared as the model sees them."""
    return psi_by_column(prepare_features(reference), prepare_features(current))


@dataclass(frozen=True)
class DriftReport:
    """PSI of each feature and of the score against the reference, and what exceeds the threshold."""

    feature_psi: dict[str, float]
    score_psi: float
    max_psi: float
    drifted: list[str]  # features, then `churn_probability` if the score moved, largest first

    @property
    def passed(self) -> bool:
        return not self.drifted

    def metadata(self) -> dict[str, float]:
        return {
            **{f"psi_{column}": value for column, value in self.feature_psi.items()},
            f"psi_{SCORE}": self.score_psi,
            "max_feature_psi": max(self.feature_psi.values()),
        }

    def summary(self) -> str:
        if not self.drifted:
            worst = max(self.feature_psi, key=self.feature_psi.get)
            return f"no drift: largest feature PSI {self.feature_psi[worst]:.3f} ({worst}), score PSI {self.score_psi:.3f}"
        named = ", ".join(f"{c} {self._psi(c):.3f}" for c in self.drifted)
        return f"PSI above {self.max_psi}: {named}"

    def _psi(self, column: str) -> float:
        return self.score_psi if column == SCORE else self.feature_psi[column]


def population_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    reference_scores: np.ndarray,
    current_scores: np.ndarray,
    *,
    max_psi: float,
) -> DriftReport:
    """Drift of features and score; a column drifts when its PSI exceeds `max_psi`."""
    features = feature_psi(reference, current)
    score = numeric_psi(reference_scores, current_scores)
    ranked: Mapping[str, float] = {**features, SCORE: score}
    return DriftReport(
        feature_psi=features, score_psi=score, max_psi=max_psi, drifted=drifted_columns(ranked, max_psi)
    )
