"""Realized performance on hand-checked fixtures: published scores joined with matured labels."""

import pandas as pd
import pytest

from churn_platform.ml.realized import realized_performance


def _joined(probabilities, labels, version="3"):
    return pd.DataFrame({"user_id": range(len(labels)), "churn_probability": probabilities,
                         "model_version": version, "churned": labels})


def test_a_perfect_ranking_on_ten_users():
    # the two riskiest users churned: AUC 1, the top decile (one user) churns at 1.0 against 0.2 overall
    (result,) = realized_performance(_joined([0.9, 0.8, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05],
                                             [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert result.model_version == "3" and result.rows == 10
    assert result.roc_auc == 1.0 and result.churn_rate == pytest.approx(0.2)
    assert result.top_decile_lift == pytest.approx(5.0)
    # Brier by hand: (0.1² + 0.2²) for the churners + the squares of the others' probabilities
    brier = (0.01 + 0.04 + sum(p * p for p in [0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05])) / 10
    assert result.calibration.brier_score == pytest.approx(brier)
    (top_bin,) = [b for b in result.calibration.bins if b.lower == 0.8]
    assert (top_bin.count, top_bin.observed_rate) == (1, 1.0)
    assert result.metadata()["realized_roc_auc"] == 1.0


def test_each_model_version_is_measured_on_its_own_users():
    joined = pd.concat([
        _joined([0.9, 0.1, 0.8, 0.2] * 3, [1, 0, 1, 0] * 3, version="1"),  # ranks perfectly
        _joined([0.1, 0.9, 0.2, 0.8] * 3, [1, 0, 1, 0] * 3, version="2"),  # ranks backwards
    ])
    by_version = {r.model_version: r for r in realized_performance(joined)}
    assert by_version["1"].roc_auc == 1.0 and by_version["2"].roc_auc == 0.0
    assert by_version["1"].rows == by_version["2"].rows == 12


def test_no_auc_is_invented():
    with pytest.raises(ValueError, match="all have label 0"):
        realized_performance(_joined([0.3, 0.2] * 5, [0] * 10))
    with pytest.raises(ValueError, match="no published score"):
        realized_performance(_joined([], []))
