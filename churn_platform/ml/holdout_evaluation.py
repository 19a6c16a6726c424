"""Evaluation of one trained version on its holdout: the numbers a retention team asks for.

Lift and gains by decile, precision and recall at the top 5/10/20 %, the reliability curve
and Brier score, ROC AUC per plan tier and permutation feature importance, computed once per
training and logged with the version (MLflow metrics and artifacts, Dagster metadata).
The arithmetic lives in `evaluation`; this module applies it to a fitted pipeline.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from churn_platform.constants import FEATURE_COLUMNS, LABEL_COLUMN
from churn_platform.ml.evaluation import (
    Calibration,
    LiftTable,
    SegmentAuc,
    TopFraction,
    calibration_report,
    lift_table,
    precision_recall_at_top,
    roc_auc_by_segment,
)
from churn_platform.ml.training import CATEGORICAL_COLUMN, NUMERIC_COLUMNS

UNKNOWN_TIER = "unknown"  # a holdout row without a plan tier is its own segment, never dropped
# Permutation importance on at most this many holdout rows, a few shuffles each: the ranking of
# seven features is stable at this size, and the whole evaluation stays a small share of a training.
IMPORTANCE_ROWS = 2_500
IMPORTANCE_REPEATS = 3
IMPORTANCE_SEED = 0


@dataclass(frozen=True)
class FeatureImportance:
    """Mean drop in holdout ROC AUC when the feature's values are shuffled (higher matters more)."""

    feature: str
    auc_drop: float
    std: float


@dataclass(frozen=True)
class HoldoutEvaluation:
    roc_auc: float
    lift: LiftTable
    top: tuple[TopFraction, ...]
    calibration: Calibration
    tiers: tuple[SegmentAuc, ...]
    importance: tuple[FeatureImportance, ...]  # most important first
    seconds: float

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow metrics and Dagster metadata (plotted across partitions)."""
        numbers = {
            "top_decile_lift": self.lift.top_decile_lift,
            "brier_score": self.calibration.brier_score,
        }
        for top in self.top:
            percent = round(top.fraction * 100)
            numbers[f"precision_at_{percent}pct"] = top.precision
            numbers[f"recall_at_{percent}pct"] = top.recall
        for tier in self.tiers:
            if tier.auc is not None:
                numbers[f"roc_auc_{tier.segment}"] = tier.auc
        return numbers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tier_segments(holdout: pd.DataFrame) -> np.ndarray:
    """Plan tier per row as text, missing tiers labelled explicitly."""
    tiers = holdout[CATEGORICAL_COLUMN].astype(object)
    return tiers.where(tiers.notna(), UNKNOWN_TIER).astype(str).to_numpy()


def _aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of `scores` (Mann-Whitney on average ranks: ties count one half, as in
    roc_auc_score), all rows in one ranking call instead of one validated sklearn call each."""
    positives = labels == 1
    n_positive, n_negative = int(positives.sum()), int((~positives).sum())
    ranks = rankdata(scores, axis=1)
    return (ranks[:, positives].sum(axis=1) - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def permutation_importance(model, X: pd.DataFrame, y: np.ndarray) -> tuple[FeatureImportance, ...]:
    """Shuffle one feature at a time and measure the AUC lost, on the classifier's encoded input.

    Encoding once and shuffling the encoded columns is the same as shuffling the raw column (the
    encoder is per column) and avoids re-running the encoder for every shuffle.
    """
    rng = np.random.default_rng(IMPORTANCE_SEED)
    rows = rng.choice(len(X), size=min(len(X), IMPORTANCE_ROWS), replace=False)
    encoded = np.asarray(model[:-1].transform(X.iloc[rows]), dtype=np.float64)
    labels = y[rows]
    if labels.min() == labels.max():
        raise ValueError("the importance sample holds a single class: AUC is undefined")
    classifier = model[-1]
    encoded_names = (*NUMERIC_COLUMNS, CATEGORICAL_COLUMN)  # the encoder's output order
    # Every shuffled copy goes through the trees in one call: a call's cost is mostly per tree.
    copies = [encoded]
    for column in range(len(encoded_names)):
        for _ in range(IMPORTANCE_REPEATS):
            shuffled = encoded.copy()
            shuffled[:, column] = encoded[rng.permutation(len(encoded)), column]
            copies.append(shuffled)
    probabilities = classifier.predict_proba(np.vstack(copies))[:, 1].reshape(len(copies), len(encoded))
    aucs = _aucs(labels, probabilities)
    losses = (aucs[0] - aucs[1:]).reshape(len(encoded_names), IMPORTANCE_REPEATS)
    drops = {name: (float(losses[i].mean()), float(losses[i].std())) for i, name in enumerate(encoded_names)}
    ranked = sorted(FEATURE_COLUMNS, key=lambda name: (-drops[name][0], FEATURE_COLUMNS.index(name)))
    return tuple(FeatureImportance(name, *drops[name]) for name in ranked)


def evaluate_holdout(model, holdout: pd.DataFrame, *, n_threads: int = 1) -> HoldoutEvaluation:
    """Every evaluation number of a fitted pipeline on its holdout (features + label).

    OpenMP is capped like the fit (TrainingParams.n_threads): on a busy machine the trees'
    default of all cores made each prediction several times slower.
    """
    started = time.perf_counter()
    X = holdout.loc[:, list(FEATURE_COLUMNS)]
    y = holdout[LABEL_COLUMN].to_numpy(dtype=np.int64)
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        probability = model.predict_proba(X)[:, 1]
        importance = permutation_importance(model, X, y)
    return HoldoutEvaluation(
        roc_auc=float(roc_auc_score(y, probability)),
        lift=lift_table(y, probability),
        top=precision_recall_at_top(y, probability),
        calibration=calibration_report(y, probability),
        tiers=roc_auc_by_segment(y, probability, tier_segments(holdout)),
        importance=importance,
        seconds=time.perf_counter() - started,
    )


def evaluation_markdown(evaluation: HoldoutEvaluation) -> str:
    """The evaluation as markdown tables (Dagster metadata, the model card)."""
    lines = [
        f"**ROC AUC** {evaluation.roc_auc:.4f} · **top-decile lift** {evaluation.lift.top_decile_lift:.2f} · "
        f"**Brier** {evaluation.calibration.brier_score:.4f} · holdout {evaluation.lift.rows:,} rows, "
        f"churn rate {evaluation.lift.churn_rate:.1%}",
        "",
        "| contacted | users | churners reached | precision | recall |",
        "|---|---|---|---|---|",
        *(
            f"| top {t.fraction:.0%} | {t.contacted:,} | {t.positives_reached:,} | {t.precision:.3f} | {t.recall:.3f} |"
            for t in evaluation.top
        ),
        "",
        "| decile | churn rate | lift | cumulative gain |",
        "|---|---|---|---|",
        *(f"| {d.decile} | {d.churn_rate:.3f} | {d.lift:.2f} | {d.cumulative_gain:.3f} |" for d in evaluation.lift.deciles),
        "",
        "| plan tier | rows | churners | ROC AUC |",
        "|---|---|---|---|",
        *(
            f"| {s.segment} | {s.rows:,} | {s.positives:,} | "
            f"{'undefined: ' + s.undefined_reason if s.auc is None else f'{s.auc:.4f}'} |"
            for s in evaluation.tiers
        ),
        "",
        "| feature | AUC lost when shuffled |",
        "|---|---|",
        *(f"| {f.feature} | {f.auc_drop:.4f} ± {f.std:.4f} |" for f in evaluation.importance),
        "",
        "| predicted | rows | mean predicted | observed churn rate |",
        "|---|---|---|---|",
        *(
            f"| {b.lower:.1f}–{b.upper:.1f} | {b.count:,} | "
            f"{'–' if b.mean_predicted is None else f'{b.mean_predicted:.3f}'} | "
            f"{'–' if b.observed_rate is None else f'{b.observed_rate:.3f}'} |"
            for b in evaluation.calibration.bins
        ),
    ]
    return "\n".join(lines)
