"""Training core for the churn model (docs/contract.md §4): split, estimator, metrics.

Plain Python on purpose: Dagster assets and tests call these functions directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

from churn_platform.constants import FEATURE_COLUMNS, LABEL_COLUMN
from churn_platform.events import PLAN_TIERS
from churn_platform.ml.params import TrainingParams

CATEGORICAL_COLUMN = "plan_tier"
NUMERIC_COLUMNS = tuple(c for c in FEATURE_COLUMNS if c != CATEGORICAL_COLUMN)

# Types in these models' skops files that skops does not trust by default, reviewed
# for models this platform trains itself: HistGradientBoosting's tree predictor and
# the check_array partial of its categorical preprocessing; the seed's tree.
SKOPS_TRUSTED_TYPES = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
    "sklearn.tree._tree.Tree",
)


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model with the holdout it was measured on (features + label)."""

    model: Pipeline
    params: TrainingParams
    metrics: dict[str, float]
    holdout: pd.DataFrame
    fit_seconds: float


def prepare_features(df: pd.DataFrame) -> pd.DataFrame:
    """Select the model inputs in contract order: numbers as float64, plan_tier a fixed categorical.

    float64 turns nullable integers (pd.NA from the warehouse) into NaN, which the
    trees treat as missing. Fixed categories keep training and scoring encodings
    identical; a tier outside the contract would silently become missing in a
    Categorical, so it raises instead.
    """
    missing = [c for c in FEATURE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"feature frame lacks columns {missing}")
    features = df.loc[:, list(FEATURE_COLUMNS)].astype({c: "float64" for c in NUMERIC_COLUMNS})
    tiers = features[CATEGORICAL_COLUMN]
    unknown = sorted(set(tiers.dropna().astype(str)) - set(PLAN_TIERS))
    if unknown:
        raise ValueError(f"unknown {CATEGORICAL_COLUMN} values {unknown}; expected {PLAN_TIERS}")
    features[CATEGORICAL_COLUMN] = pd.Categorical(tiers.astype("object"), categories=PLAN_TIERS)
    return features


def _user_hash(user_ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit mix of each user id (splitmix64): a stable pseudo-random rank per user."""
    with np.errstate(over="ignore"):
        x = user_ids.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def split_training_set(
    df: pd.DataFrame, params: TrainingParams = TrainingParams()
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The seed's stratified 80/20 split (seeded with random_state 42), by user.

    Within each class the users with the lowest seeded hash form the 20% holdout. A user keeps
    the same hash every week, so a model's training users stay out of the next weeks' holdouts;
    with a fresh random split per week the champion would be scored on rows it was trained on
    (consecutive weeks share most users) and champion/challenger would favour the champion.
    """
    for column in (LABEL_COLUMN, "user_id"):
        if column not in df.columns:
            raise ValueError(f"training frame lacks column {column!r}")
    y = df[LABEL_COLUMN].astype("int64")
    ranks = _user_hash(df["user_id"].to_numpy(), params.random_state)
    labels = y.to_numpy()
    in_test = np.zeros(len(df), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = int(round(len(members) * params.test_size))
        in_test[members[np.argsort(ranks[members], kind="stable")[:n_test]]] = True
    X = prepare_features(df)
    return X[~in_test], X[in_test], y[~in_test], y[in_test]


def _plan_tier_encoder() -> ColumnTransformer:
    """Numeric columns pass through; plan_tier becomes its index in PLAN_TIERS.

    Living inside the model, this lets a loaded model score plan_tier given as plain
    strings or as a categorical. Missing tiers become NaN, which the trees treat as missing.
    """
    return ColumnTransformer(
        [
            ("numeric", "passthrough", list(NUMERIC_COLUMNS)),
            (
                CATEGORICAL_COLUMN,
                OrdinalEncoder(
                    categories=[list(PLAN_TIERS)],
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                ),
                [CATEGORICAL_COLUMN],
            ),
        ],
        remainder="drop",
    )


def build_estimator(params: TrainingParams = TrainingParams()) -> Pipeline:
    """The platform's default model: HistGradientBoosting with plan_tier as a native categorical."""
    plan_tier_index = len(NUMERIC_COLUMNS)  # the encoder emits numeric columns first
    return Pipeline(
        [
            ("encode", _plan_tier_encoder()),
            (
                "classify",
                HistGradientBoostingClassifier(
                    learning_rate=params.learning_rate,
                    max_iter=params.max_iter,
                    max_leaf_nodes=params.max_leaf_nodes,
                    min_samples_leaf=params.min_samples_leaf,
                    l2_regularization=params.l2_regularization,
                    categorical_features=[plan_tier_index],
                    early_stopping=False,
                    random_state=params.random_state,
                ),
            ),
        ]
    )


def baseline_estimator() -> Pipeline:
    """The origin lesson's GradientBoostingClassifier(300, 0.05): the baseline our default must match."""
    return Pipeline(
        [
            ("encode", _plan_tier_encoder()),
            (
                "classify",
                GradientBoostingClassifier(n_estimators=300, learning_rate=0.05, random_state=42),
            ),
        ]
    )


def evaluate(model, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Holdout metrics. Errors propagate, never become a number.

    sklearn only warns and returns NaN for a single-class holdout, so that is checked here.
    """
    if pd.Series(y).nunique() < 2:
        raise ValueError("holdout has a single class; ROC AUC is undefined")
    churn_probability = model.predict_proba(X)[:, 1]
    return {
        "roc_auc": float(roc_auc_score(y, churn_probability)),
        "pr_auc": float(average_precision_score(y, churn_probability)),
        "log_loss": float(log_loss(y, churn_probability, labels=[0, 1])),
        "rows": float(len(y)),
        "churn_rate": float(np.mean(y)),
    }


def train(df: pd.DataFrame, params: TrainingParams = TrainingParams(), estimator=None) -> TrainedModel:
    """Split, fit (default: build_estimator(params)) and measure on the holdout."""
    X_train, X_test, y_train, y_test = split_training_set(df, params)
    model = estimator if estimator is not None else build_estimator(params)
    with threadpool_limits(limits=params.n_threads, user_api="openmp"):
        started = time.perf_counter()
        model.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - started
    return TrainedModel(
        model=model,
        params=params,
        metrics=evaluate(model, X_test, y_test),
        holdout=X_test.assign(**{LABEL_COLUMN: y_test}),
        fit_seconds=fit_seconds,
    )
