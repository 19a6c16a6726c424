"""Reason codes: per-row feature contributions to the churn model's log-odds, and the top ones.

Path decomposition (Saabas) over the HistGradientBoosting trees: each split on a row's path
credits its feature with value(child) - value(node), so bias + contributions equals the raw
score exactly (the sum telescopes to leaf - root per tree). No `shap` dependency.

It reads sklearn's private fitted state (`_predictors`, `_preprocessor`, `_bin_mapper`,
`_baseline_prediction`), so every call checks that its own routing reproduces
`decision_function` and raises if a future sklearn routes differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from churn_platform.constants import FEATURE_COLUMNS

# Beyond rounding of a few hundred float64 additions, any gap means a row took another path.
_RAW_SCORE_ATOL = 1e-9


@dataclass(frozen=True)
class Contributions:
    """Per-row log-odds contributions: bias + values.sum(axis=1) is the model's raw score.

    bias is the same for every row (the mean training score); values has one float64
    column per feature in contract order (FEATURE_COLUMNS), indexed like the scored rows.
    """

    bias: np.ndarray
    values: pd.DataFrame

    def __post_init__(self):
        if tuple(self.values.columns) != FEATURE_COLUMNS:
            raise ValueError(f"contribution columns must be FEATURE_COLUMNS {FEATURE_COLUMNS}")
        if self.bias.shape != (len(self.values),):
            raise ValueError(f"bias has shape {self.bias.shape}; expected ({len(self.values)},)")


def contributions(model: Pipeline, features: pd.DataFrame, probability: np.ndarray | None = None) -> Contributions:
    """Contributions of each feature to each row's raw churn score (log-odds).

    features is what `prepare_features()` returns. Raises TypeError for a model that is not
    build_estimator()'s shape: an 'encode' ColumnTransformer then a binary
    HistGradientBoostingClassifier 'classify'. The routing is checked against the model's own
    prediction: `probability` (its predict_proba for these rows) when the caller has it, which
    saves predicting twice, else its decision_function.
    """
    encode, classify = _pipeline_steps(model)
    encoded = encode.transform(features)
    X = classify._preprocess_X(encoded, reset=False)  # what _raw_predict routes on
    feature_of_column = _contract_position_of_classifier_columns(encode, classify, X.shape[1])
    known_cat_bitsets, f_idx_map = classify._bin_mapper.make_known_categories_bitsets()
    known_categories = {
        int(f): _bitset_members(known_cat_bitsets[f_idx_map[f]])
        for f in np.flatnonzero(classify._bin_mapper.is_categorical_)
    }
    columns = np.ascontiguousarray(X.T, dtype=np.float64)  # one contiguous row per feature

    values = np.zeros((len(FEATURE_COLUMNS), len(X)))
    bias = classify._baseline_prediction.item()
    raw = np.full(len(X), bias)
    for (predictor,) in classify._predictors:
        nodes = predictor.nodes
        left_categories = {
            int(i): _bitset_members(predictor.raw_left_cat_bitsets[nodes["bitset_idx"][i]])
            for i in np.flatnonzero(nodes["is_categorical"])
        }
        leaf = _route(nodes, left_categories, known_categories, columns)
        raw += nodes["value"][leaf]  # sklearn's order of additions: the check below stays tight
        node_value = _node_values(nodes)
        bias += node_value[0]
        path = _path_contributions(nodes, node_value, feature_of_column)
        for feature in np.flatnonzero(path.any(axis=0)):
            values[feature] += path[leaf, feature]

    if probability is not None:
        raw, expected = expit(raw), np.asarray(probability, dtype=np.float64)
    else:
        expected = np.asarray(model.decision_function(features), dtype=np.float64)
    if not np.allclose(raw, expected, rtol=0, atol=_RAW_SCORE_ATOL):
        worst = int(np.argmax(np.abs(raw - expected)))
        raise RuntimeError(
            "tree routing disagrees with the classifier's own prediction "
            f"(row {worst}: {raw[worst]!r} vs {expected[worst]!r}); "
            "has sklearn changed its predictor?"
        )
    return Contributions(
        bias=np.full(len(X), bias),
        values=pd.DataFrame(values.T, index=features.index, columns=list(FEATURE_COLUMNS)),
    )


def top_reasons(contributions: Contributions, k: int = 3) -> pd.DataFrame:
    """Columns reason_1..reason_k: the features that pushed each row's score up, largest first.

    Only positive contributions count; None fills the places beyond them. Equal
    contributions keep contract column order (a stable sort), so reasons are reproducible.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    values = contributions.values.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(values, order, axis=1)
    names = np.asarray(contributions.values.columns, dtype=object)[order]
    reasons = np.full((len(values), k), None, dtype=object)
    reasons[:, : order.shape[1]] = np.where(ranked > 0, names, None)
    return pd.DataFrame(
        reasons,
        index=contributions.values.index,
        columns=[f"reason_{i}" for i in range(1, k + 1)],
    )


def _pipeline_steps(model) -> tuple[ColumnTransformer, HistGradientBoostingClassifier]:
    """The fitted encoder and classifier, or TypeError: other models have other trees (or none)."""
    step_names = [name for name, _ in model.steps] if isinstance(model, Pipeline) else None
    if step_names != ["encode", "classify"]:
        raise TypeError(
            "reason codes need build_estimator()'s Pipeline(encode, classify); "
            f"got {type(model).__name__}"
        )
    encode, classify = model.named_steps["encode"], model.named_steps["classify"]
    if not isinstance(encode, ColumnTransformer):
        raise TypeError(f"'encode' must be a ColumnTransformer, got {type(encode).__name__}")
    if not isinstance(classify, HistGradientBoostingClassifier):
        raise TypeError(
            f"'classify' must be a HistGradientBoostingClassifier, got {type(classify).__name__}"
        )
    check_is_fitted(classify)
    if classify.n_trees_per_iteration_ != 1:
        raise TypeError("reason codes need a binary classifier: one tree per iteration")
    return encode, classify


def _contract_position_of_classifier_columns(
    encode: ColumnTransformer, classify: HistGradientBoostingClassifier, n_columns: int
) -> np.ndarray:
    """For each column the trees split on, its position in FEATURE_COLUMNS.

    Two reorderings stand between the contract and the trees: our encoder emits numeric
    columns then plan_tier, and the classifier's own preprocessor moves categorical columns
    first (plan_tier is the trees' feature 0).
    """
    encoded_names = np.empty(max(s.stop for s in encode.output_indices_.values()), dtype=object)
    for name, _, columns in encode.transformers_:
        output = encode.output_indices_[name]
        if output.stop == output.start:
            continue
        if output.stop - output.start != len(columns):
            raise TypeError(f"encoder part {name!r} must emit one column per input column")
        encoded_names[output] = list(columns)
    unknown = sorted(set(encoded_names) - set(FEATURE_COLUMNS))
    if unknown:
        raise TypeError(f"encoder emits columns outside FEATURE_COLUMNS: {unknown}")
    encoded_position = np.array([FEATURE_COLUMNS.index(n) for n in encoded_names])

    preprocessor = classify._preprocessor
    if preprocessor is None:  # no categorical features: the trees see the encoder's columns
        return encoded_position
    source = np.empty(n_columns, dtype=np.intp)
    for name, _, columns in preprocessor.transformers_:
        source[preprocessor.output_indices_[name]] = np.arange(preprocessor.n_features_in_)[columns]
    return encoded_position[source]


def _route(
    nodes: np.ndarray,
    left_categories: dict[int, np.ndarray],
    known_categories: dict[int, np.ndarray],
    columns: np.ndarray,
) -> np.ndarray:
    """The leaf each row reaches: rows descend together, split into index sets node by node.

    Each level touches every row once, with a node's threshold or category set as scalars.
    Mirrors sklearn's _predict_one_from_raw_data: NaN follows missing_go_to_left; on a
    categorical split so does a negative or unknown category, a category in the node's
    bitset goes left and another known one right; numbers go left when x <= num_threshold.
    """
    leaf = np.empty(columns.shape[1], dtype=np.intp)
    pending = [(0, np.arange(columns.shape[1]))]
    while pending:
        i, rows = pending.pop()
        node = nodes[i]
        if node["is_leaf"]:
            leaf[rows] = i
            continue
        x = columns[node["feature_idx"], rows]
        missing = np.isnan(x)
        if node["is_categorical"]:
            valid = ~missing & (x >= 0)
            category = np.where(valid, x, 0).astype(np.uint8)
            go_left = left_categories[i][category]
            missing = ~valid | ~(go_left | known_categories[node["feature_idx"]][category])
        else:
            go_left = x <= node["num_threshold"]
        go_left = np.where(missing, bool(node["missing_go_to_left"]), go_left)
        pending.append((int(node["left"]), rows[go_left]))
        pending.append((int(node["right"]), rows[~go_left]))
    return leaf


def _bitset_members(bitset: np.ndarray) -> np.ndarray:
    """sklearn's 8 x uint32 category bitset as a lookup table: member[category] for 0..255."""
    category = np.arange(256)
    return (bitset[category // 32] >> (category % 32)) & 1 == 1


def _node_values(nodes: np.ndarray) -> np.ndarray:
    """Node values on the leaves' scale: an internal node is its children's count-weighted mean.

    sklearn 1.9 stores 0 at the root and the unshrunk Newton step at other internal nodes,
    while leaves are multiplied by the learning rate; those stored values would mix scales.
    The mean makes each root the tree's average over its training rows, so the bias is the
    average training score. Children follow their parent in `nodes`, hence the reverse pass.
    """
    value = nodes["value"].astype(np.float64)
    count = nodes["count"].astype(np.float64)
    for i in np.flatnonzero(nodes["is_leaf"] == 0)[::-1]:
        left, right = nodes["left"][i], nodes["right"][i]
        value[i] = (count[left] * value[left] + count[right] * value[right]) / (
            count[left] + count[right]
        )
    return value


def _path_contributions(
    nodes: np.ndarray, node_value: np.ndarray, feature_of_column: np.ndarray
) -> np.ndarray:
    """(n_nodes, n_features): what the path from the root to each node credits to each feature."""
    path = np.zeros((len(nodes), len(FEATURE_COLUMNS)))
    for i in np.flatnonzero(nodes["is_leaf"] == 0):
        feature = feature_of_column[nodes["feature_idx"][i]]
        for child in (nodes["left"][i], nodes["right"][i]):
            path[child] = path[i]
            path[child, feature] += node_value[child] - node_value[i]
    return path
