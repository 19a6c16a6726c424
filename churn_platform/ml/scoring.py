"""Scoring a week's users with the champion: probability, risk decile and the reasons behind it.

Shared by both engines: DuckDB scores the whole week here; Spark applies `score_batch` per Arrow
batch on its executors and ranks the deciles in SQL with the same rule (`DECILE_SQL`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn_platform.ml.reasons import contributions, top_reasons
from churn_platform.ml.training import prepare_features

REASONS = 3
REASON_COLUMNS = tuple(f"reason_{i}" for i in range(1, REASONS + 1))
# The churn_scores columns, in table order (docs/contract.md §3).
SCORE_COLUMNS = ("as_of_date", "user_id", "churn_probability", "model_version", "risk_decile", *REASON_COLUMNS)
# risk_deciles in SQL: rank 0 is the highest probability, ties by the lower user id.
DECILE_SQL = (
    "CAST(FLOOR((ROW_NUMBER() OVER (ORDER BY churn_probability DESC, user_id) - 1) * 10 "
    "/ COUNT(*) OVER ()) AS INT) + 1"
)


def score_batch(model, features: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """Probability and top reasons per user (every SCORE_COLUMNS column but risk_decile)."""
    prepared = prepare_features(features)
    scores = features[["as_of_date", "user_id"]].reset_index(drop=True)
    scores["churn_probability"] = model.predict_proba(prepared)[:, 1]
    scores["model_version"] = model_version
    reasons = top_reasons(contributions(model, prepared, scores["churn_probability"].to_numpy()), k=REASONS)
    reasons = reasons.reset_index(drop=True)
    for column in REASON_COLUMNS:
        scores[column] = reasons[column].astype(object)
    return scores


def score_users(model, features: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """A whole week's scores in table order, risk deciles ranked over all its users."""
    scores = score_batch(model, features, model_version)
    scores["risk_decile"] = risk_deciles(scores["churn_probability"], scores["user_id"])
    return scores.loc[:, list(SCORE_COLUMNS)]


def risk_deciles(probabilities, user_ids=None) -> np.ndarray:
    """Risk decile per user: 1 = the riskiest 10 %, 10 = the least risky (int32, like the column).

    Rank-based, so deciles are as equal in size as n allows: rank 0 is the highest probability
    and decile = floor(rank * 10 / n) + 1. Equal probabilities are ordered by `user_ids`
    (ascending) when given, else by position; pass the user ids so a rerun over the same scores
    in another row order gives every user the same decile.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"risk_deciles needs a 1-D sequence of probabilities, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("risk_deciles: probabilities must be finite numbers (found NaN or infinity)")
    n = len(p)
    if user_ids is None:
        order = np.argsort(-p, kind="stable")
    else:
        ids = np.asarray(user_ids)
        if ids.shape != p.shape:
            raise ValueError(f"risk_deciles: {len(ids)} user ids for {n} probabilities")
        order = np.lexsort((ids, -p))  # the last key sorts first
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return (rank * 10 // max(n, 1) + 1).astype(np.int32)
