"""Evaluation numbers for the retention team: ranking, calibration, drift, comparison, value.

Plain numpy/pandas/scikit-learn, free of Dagster and MLflow, so assets, reports and tests
call the same functions. Results are JSON-friendly: Python ints and floats, `None` where a
number is undefined (never NaN), `to_dict()` on multi-value results. Inputs that make a
number meaningless (no positives, mismatched lengths, scores outside [0, 1] where
probabilities are required) raise ValueError instead of returning a default.

Ranking ties: rows are ordered by score descending with a stable sort, so equal scores
keep their input order at a decile or top-k cut.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

N_DECILES = 10
DEFAULT_TOP_FRACTIONS = (0.05, 0.10, 0.20)
DEFAULT_CALIBRATION_BINS = 10
# Conventional floor for an empty PSI bin's share: keeps ln(current / reference) finite. A bin
# empty on both sides contributes exactly 0; a bin empty on one side contributes about
# share * ln(share / 1e-4), so one fully vacated decile (share 0.1) adds ~0.69.
PSI_EPSILON = 1e-4
# Rule of thumb: below 0.1 stable, 0.1-0.2 worth watching, above 0.2 the feature has shifted.
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_N_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
# Resamples drawn per block: bounds memory to block x rows counts. A constant, not a parameter,
# so the rows a seed draws never depend on it.
_BOOTSTRAP_BLOCK = 100
# 0.07 * 100 is 7.000000000000001 in floats: without this the top 7% of 100 rows would be 8 rows.
_CEIL_TOLERANCE = 1e-9


class _JsonRecord:
    """`to_dict()` for the frozen result dataclasses (their fields hold only JSON types)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        others = sorted({repr(v) for v in y.tolist() if v not in (0, 1)})
        raise ValueError(f"y_true must hold only 0 and 1, found {', '.join(others[:5])}")
    return y.astype(np.int64)


def _scores(y_score: Any, n_rows: int, name: str = "y_score") -> np.ndarray:
    s = np.asarray(y_score, dtype=np.float64)
    if s.ndim != 1 or len(s) != n_rows:
        raise ValueError(f"{name} must be 1-D with {n_rows} rows like y_true, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(s)).sum())} NaN or infinite values")
    return s


def _probabilities(y_prob: Any, n_rows: int) -> np.ndarray:
    p = _scores(y_prob, n_rows, "y_prob")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"y_prob must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    return p


def _fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    checked = tuple(float(k) for k in fractions)
    if not checked or any(not (0.0 < k <= 1.0) for k in checked):
        raise ValueError(f"top fractions must lie in (0, 1], got {fractions!r}")
    return checked


def _labels_by_rank(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Labels ordered by score descending; ties keep input order (stable sort on -score)."""
    return y[np.argsort(-s, kind="stable")]


@dataclass(frozen=True)
class Decile(_JsonRecord):
    """One tenth of the rows by score; decile 1 holds the highest scores."""

    decile: int
    rows: int
    positives: int
    churn_rate: float
    lift: float  # churn_rate / overall churn rate
    cumulative_gain: float  # share of all positives found in deciles 1..decile


@dataclass(frozen=True)
class LiftTable(_JsonRecord):
    """Lift and cumulative gains by score decile: how much better than random the ranking targets."""

    rows: int
    positives: int
    churn_rate: float
    top_decile_lift: float
    deciles: tuple[Decile, ...]


def lift_table(y_true: Any, y_score: Any) -> LiftTable:
    """Lift and gains per decile; deciles differ in size by at most one row (earlier ones larger)."""
    y = _labels(y_true)
    s = _scores(y_score, len(y))
    if len(y) < N_DECILES:
        raise ValueError(f"a decile table needs at least {N_DECILES} rows, got {len(y)}")
    total_positives = int(y.sum())
    if total_positives == 0:
        raise ValueError("y_true has no positives: churn rate is 0, lift and gains are undefined")
    base_rate = total_positives / len(y)
    deciles = []
    captured = 0
    for number, group in enumerate(np.array_split(_labels_by_rank(y, s), N_DECILES), start=1):
        positives = int(group.sum())
        captured += positives
        rate = positives / len(group)
        deciles.append(
            Decile(
                decile=number,
                rows=len(group),
                positives=positives,
                churn_rate=rate,
                lift=rate / base_rate,
                cumulative_gain=captured / total_positives,
            )
        )
    return LiftTable(
        rows=len(y),
        positives=total_positives,
        churn_rate=base_rate,
        top_decile_lift=deciles[0].lift,
        deciles=tuple(deciles),
    )


def _top_rows(n_rows: int, fraction: float) -> int:
    """ceil(fraction * n_rows), immune to float error at exact products; at least one row."""
    return max(1, math.ceil(fraction * n_rows - _CEIL_TOLERANCE))


def _reached(
    y_true: Any, y_score: Any, fractions: Sequence[float]
) -> tuple[int, list[tuple[float, int, int]]]:
    """(total positives, [(fraction, contacted, positives among them)]) for the top rows by score."""
    y = _labels(y_true)
    s = _scores(y_score, len(y))
    cumulative = np.cumsum(_labels_by_rank(y, s))
    rows = []
    for k in _fractions(fractions):
        contacted = _top_rows(len(y), k)
        rows.append((k, contacted, int(cumulative[contacted - 1])))
    return int(cumulative[-1]), rows


@dataclass(frozen=True)
class TopFraction(_JsonRecord):
    """Precision and recall when the top `fraction` of users by score are contacted."""

    fraction: float
    contacted: int  # ceil(fraction * rows)
    positives_reached: int
    precision: float
    recall: float


def precision_recall_at_top(
    y_true: Any, y_score: Any, fractions: Sequence[float] = DEFAULT_TOP_FRACTIONS
) -> tuple[TopFraction, ...]:
    """Precision and recall in the top ceil(k * n) rows by score, for each fraction k."""
    total_positives, reached = _reached(y_true, y_score, fractions)
    if total_positives == 0:
        raise ValueError("y_true has no positives: recall is undefined")
    return tuple(
        TopFraction(
            fraction=k,
            contacted=contacted,
            positives_reached=positives,
            precision=positives / contacted,
            recall=positives / total_positives,
        )
        for k, contacted, positives in reached
    )


@dataclass(frozen=True)
class ContactValue(_JsonRecord):
    """Expected value of a retention campaign on the top `fraction` of users by score."""

    fraction: float
    contacted: int
    positives_reached: int
    expected_saves: float  # positives_reached * save_rate
    campaign_cost: float  # contacted * contact_cost
    expected_value: float  # expected_saves * saved_value - campaign_cost


def contact_expected_value(
    y_true: Any,
    y_score: Any,
    *,
    contact_cost: float,
    saved_value: float,
    save_rate: float,
    fractions: Sequence[float] = DEFAULT_TOP_FRACTIONS,
) -> tuple[ContactValue, ...]:
    """EV = positives_reached * save_rate * saved_value - contacted * contact_cost, per fraction.

    The three economics have no defaults on purpose: a save rate of 1.0 (every contacted
    churner stays) overstates the value of any campaign, so the caller states its assumption.
    positives_reached counts actual churners among the contacted rows of a labelled holdout.
    """
    for name, value in (("contact_cost", contact_cost), ("saved_value", saved_value)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not (0.0 <= save_rate <= 1.0):
        raise ValueError(f"save_rate must lie in [0, 1], got {save_rate!r}")
    _, reached = _reached(y_true, y_score, fractions)
    results = []
    for k, contacted, positives in reached:
        saves = positives * float(save_rate)
        cost = contacted * float(contact_cost)
        results.append(
            ContactValue(
                fraction=k,
                contacted=contacted,
                positives_reached=positives,
                expected_saves=saves,
                campaign_cost=cost,
                expected_value=saves * float(saved_value) - cost,
            )
        )
    return tuple(results)


@dataclass(frozen=True)
class ReliabilityBin(_JsonRecord):
    """Rows whose predicted probability lies in [lower, upper) (the last bin includes 1.0)."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None  # None when count is 0
    observed_rate: float | None  # None when count is 0


@dataclass(frozen=True)
class Calibration(_JsonRecord):
    """Reliability curve and Brier score: do the predicted probabilities mean what they say."""

    brier_score: float
    bins: tuple[ReliabilityBin, ...]


def brier_score(y_true: Any, y_prob: Any) -> float:
    """Mean squared difference between predicted probability and label (lower is better)."""
    y = _labels(y_true)
    p = _probabilities(y_prob, len(y))
    return float(np.mean((p - y) ** 2))


def calibration_report(y_true: Any, y_prob: Any, n_bins: int = DEFAULT_CALIBRATION_BINS) -> Calibration:
    """Reliability curve with `n_bins` equal-width bins on [0, 1] plus the Brier score.

    Bin edges are i / n_bins, and rows are assigned by comparing against those same floats,
    so a probability of exactly 0.3 lands in [0.3, 0.4) as its reported edges say.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y = _labels(y_true)
    p = _probabilities(y_prob, len(y))
    edges = np.arange(n_bins + 1) / n_bins
    index = np.minimum(np.searchsorted(edges, p, side="right") - 1, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    predicted_sums = np.bincount(index, weights=p, minlength=n_bins)
    positive_sums = np.bincount(index, weights=y, minlength=n_bins)
    bins = tuple(
        ReliabilityBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            count=int(counts[i]),
            mean_predicted=float(predicted_sums[i] / counts[i]) if counts[i] else None,
            observed_rate=float(positive_sums[i] / counts[i]) if counts[i] else None,
        )
        for i in range(n_bins)
    )
    return Calibration(brier_score=float(np.mean((p - y) ** 2)), bins=bins)


@dataclass(frozen=True)
class SegmentAuc(_JsonRecord):
    """ROC AUC within one segment; `auc` is None (with the reason) when the segment has one class."""

    segment: Any  # the segment value as a plain Python scalar
    rows: int
    positives: int
    auc: float | None
    undefined_reason: str | None


def roc_auc_by_segment(y_true: Any, y_score: Any, segment: Any) -> tuple[SegmentAuc, ...]:
    """AUC per segment value (e.g. plan tier), in sorted segment order.

    A single-class segment has no AUC: it is reported with auc None and the reason, never as 0.5.
    Missing segment values raise: label them explicitly (e.g. "unknown") if they should count.
    """
    y = _labels(y_true)
    s = _scores(y_score, len(y))
    segments = np.asarray(segment, dtype=object)
    if segments.ndim != 1 or len(segments) != len(y):
        raise ValueError(f"segment must be 1-D with {len(y)} rows like y_true, got shape {segments.shape}")
    missing = pd.isna(segments)
    if missing.any():
        raise ValueError(f"segment has {int(missing.sum())} missing values; give them an explicit label")
    codes, values = pd.factorize(segments, sort=True)
    results = []
    for code, value in enumerate(values):
        members = codes == code
        y_segment = y[members]
        rows, positives = int(members.sum()), int(y_segment.sum())
        if positives in (0, rows):
            only = "positives" if positives else "negatives"
            auc, reason = None, f"only {only} among {rows} rows: AUC is undefined"
        else:
            auc, reason = float(roc_auc_score(y_segment, s[members])), None
        results.append(
            SegmentAuc(
                segment=value.item() if isinstance(value, np.generic) else value,
                rows=rows,
                positives=positives,
                auc=auc,
                undefined_reason=reason,
            )
        )
    return tuple(results)


def _psi_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray, epsilon: float) -> float:
    """sum((cur - ref) * ln(cur / ref)) over bins, each share floored at epsilon."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    reference = np.maximum(reference_counts / reference_counts.sum(), epsilon)
    current = np.maximum(current_counts / current_counts.sum(), epsilon)
    return float(np.sum((current - reference) * np.log(current / reference)))


def _numeric_values(values: Any, name: str) -> np.ndarray:
    x = pd.Series(values).astype("float64").to_numpy()
    if x.size == 0:
        raise ValueError(f"{name} sample is empty")
    if np.isinf(x).any():
        raise ValueError(f"{name} sample holds infinite values; PSI bins need finite values or NaN")
    return x


def _reference_edges(reference: np.ndarray) -> np.ndarray:
    """Inner bin edges: the reference's deciles, deduplicated (right-closed bins).

    When the lowest edge is the reference minimum (a constant feature, or a point mass at the
    bottom such as a count that is mostly 0), values below it get their own bin, so a shift
    downwards shows: a constant feature gets the bins below / at / above its value.
    """
    finite = reference[~np.isnan(reference)]
    if finite.size == 0:
        return np.empty(0)
    edges = np.unique(np.quantile(finite, np.arange(1, N_DECILES) / N_DECILES))
    if finite.min() == edges[0]:
        edges = np.concatenate(([np.nextafter(edges[0], -np.inf)], edges))
    return edges


def _numeric_bin_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin (-inf, e0], (e0, e1], ..., (e_last, inf), then NaN as the last bin."""
    nan_bin = len(edges) + 1
    index = np.where(np.isnan(x), nan_bin, np.searchsorted(edges, x, side="left"))
    return np.bincount(index, minlength=nan_bin + 1)


def numeric_psi(reference: Any, current: Any, *, epsilon: float = PSI_EPSILON) -> float:
    """PSI of a numeric feature on bins cut at the reference's deciles; NaN is its own bin."""
    reference_values = _numeric_values(reference, "reference")
    current_values = _numeric_values(current, "current")
    edges = _reference_edges(reference_values)
    return _psi_from_counts(
        _numeric_bin_counts(reference_values, edges), _numeric_bin_counts(current_values, edges), epsilon
    )


_MISSING = object()  # a category for missing values that no real category can equal


def _category_counts(values: Any, name: str) -> pd.Series:
    series = pd.Series(values).astype(object)
    if series.empty:
        raise ValueError(f"{name} sample is empty")
    return series.where(series.notna(), _MISSING).value_counts(sort=False)


def categorical_psi(reference: Any, current: Any, *, epsilon: float = PSI_EPSILON) -> float:
    """PSI of category shares over the categories of both samples; missing is its own category."""
    reference_counts = _category_counts(reference, "reference")
    current_counts = _category_counts(current, "current")
    categories = reference_counts.index.union(current_counts.index, sort=False)
    return _psi_from_counts(
        reference_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.float64),
        current_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.float64),
        epsilon,
    )


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def psi_by_column(
    reference: pd.DataFrame, current: pd.DataFrame, *, epsilon: float = PSI_EPSILON
) -> dict[str, float]:
    """PSI of every column, in the reference's column order: numeric PSI for numbers, else categorical.

    Both frames must have the same columns, each numeric in both or in neither: a column that
    arrives as text where numbers were expected is a broken load, not drift to measure.
    """
    missing = [c for c in reference.columns if c not in current.columns]
    extra = [c for c in current.columns if c not in reference.columns]
    if missing or extra:
        raise ValueError(
            f"frames differ in columns: missing from current {missing}, extra in current {extra}"
        )
    result = {}
    for column in reference.columns:
        numeric = _is_numeric(reference[column])
        if numeric != _is_numeric(current[column]):
            raise ValueError(
                f"column {column!r} is {reference[column].dtype} in reference"
                f" but {current[column].dtype} in current"
            )
        psi = numeric_psi if numeric else categorical_psi
        result[str(column)] = psi(reference[column], current[column], epsilon=epsilon)
    return result


def drifted_columns(psi: Mapping[str, float], threshold: float = DEFAULT_PSI_THRESHOLD) -> list[str]:
    """Columns whose PSI exceeds `threshold`, largest shift first."""
    not_numbers = [c for c, value in psi.items() if not math.isfinite(value)]
    if not_numbers:
        raise ValueError(f"PSI is not a finite number for columns {not_numbers}")
    ranked = sorted(psi.items(), key=lambda item: (-item[1], item[0]))
    return [column for column, value in ranked if value > threshold]


@dataclass(frozen=True)
class AucDeltaInterval(_JsonRecord):
    """Challenger minus champion AUC on one holdout, with a paired bootstrap percentile interval.

    `within_noise` is True when the interval includes 0: the holdout cannot tell the models apart.
    """

    champion_auc: float
    challenger_auc: float
    delta: float
    low: float
    high: float
    confidence: float
    n_resamples: int  # requested; n_resamples - n_skipped made the interval
    n_skipped: int  # resamples holding a single class, where AUC is undefined
    seed: int
    within_noise: bool


def _auc_per_weighting(counts: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC for each row of `counts` (times each holdout row is drawn), ties counting one half.

    Rank-based and exact: in score order, each positive beats the negatives scored below it
    and half of those tied with it, i.e. (negatives before its tie group + negatives through
    its tie group) / 2. Integer sums up to the final division, so the same model scored twice
    gives bit-identical AUCs. Every row of `counts` must hold both classes.
    """
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group_first = np.flatnonzero(starts_group)
    group_last = np.r_[group_first[1:], len(score)] - 1
    group = np.cumsum(starts_group) - 1
    positive_at = np.flatnonzero(y[order] == 1)  # positions (in score order) of positive rows
    drawn = counts[:, order]
    negatives = drawn * (1 - y[order])
    negatives_through = np.cumsum(negatives, axis=1)
    negatives_before = negatives_through - negatives
    below = negatives_before[:, group_first[group[positive_at]]]
    through = negatives_through[:, group_last[group[positive_at]]]
    drawn_positives = drawn[:, positive_at]
    twice_wins = (drawn_positives * (below + through)).sum(axis=1)
    pairs = drawn_positives.sum(axis=1) * negatives_through[:, -1]
    return twice_wins / (2.0 * pairs)


def bootstrap_auc_delta(
    y_true: Any,
    champion_score: Any,
    challenger_score: Any,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> AucDeltaInterval:
    """Paired bootstrap of AUC(challenger) - AUC(champion): both models scored on the same resampled rows.

    Pairing removes the holdout's sampling noise common to both models, so the interval is
    about their difference. Resamples with a single class are skipped and counted.
    """
    y = _labels(y_true)
    champion = _scores(champion_score, len(y), "champion_score")
    challenger = _scores(challenger_score, len(y), "challenger_score")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer so the interval can be reproduced, got {seed!r}")
    if y.min() == y.max():
        raise ValueError("y_true holds a single class: AUC is undefined")
    n_rows = len(y)
    everyone = np.ones((1, n_rows), dtype=np.int64)
    champion_auc = float(_auc_per_weighting(everyone, y, champion)[0])
    challenger_auc = float(_auc_per_weighting(everyone, y, challenger)[0])

    rng = np.random.default_rng(seed)
    deltas = []
    skipped = 0
    for start in range(0, n_resamples, _BOOTSTRAP_BLOCK):
        block = min(_BOOTSTRAP_BLOCK, n_resamples - start)
        drawn = rng.integers(0, n_rows, size=(block, n_rows))
        flat = (drawn + n_rows * np.arange(block)[:, None]).ravel()
        counts = np.bincount(flat, minlength=block * n_rows).reshape(block, n_rows)
        drawn_positives = counts @ y
        both_classes = (drawn_positives > 0) & (drawn_positives < n_rows)
        skipped += int(block - both_classes.sum())
        counts = counts[both_classes]
        if len(counts):
            challenger_aucs = _auc_per_weighting(counts, y, challenger)
            deltas.append(challenger_aucs - _auc_per_weighting(counts, y, champion))
    if not deltas:
        raise ValueError(f"all {n_resamples} resamples held a single class: the holdout is too small")
    tail = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(np.concatenate(deltas), [tail, 1.0 - tail]))
    return AucDeltaInterval(
        champion_auc=champion_auc,
        challenger_auc=challenger_auc,
        delta=challenger_auc - champion_auc,
        low=low,
        high=high,
        confidence=float(confidence),
        n_resamples=int(n_resamples),
        n_skipped=skipped,
        seed=int(seed),
        within_noise=low <= 0.0 <= high,
    )
