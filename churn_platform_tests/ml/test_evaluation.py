"""Evaluation numbers against answers counted by hand on tiny fixtures."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from churn_platform.ml.evaluation import (
    PSI_EPSILON,
    _auc_per_weighting,
    bootstrap_auc_delta,
    brier_score,
    calibration_report,
    categorical_psi,
    contact_expected_value,
    drifted_columns,
    lift_table,
    numeric_psi,
    precision_recall_at_top,
    psi_by_column,
    roc_auc_by_segment,
)

# 20 users; by score descending the labels are 11 10 10 00 10 00 00 00 00 00 (pairs = deciles):
# 5 positives, overall rate 0.25.
RANKED_LABELS = [1, 1, 1, 0, 1, 0, 0, 0, 1, 0] + [0] * 10
RANKED_SCORES = [(19 - i) / 20 for i in range(20)]  # 0.95 down to 0.0
SHUFFLE = np.random.default_rng(7).permutation(20)  # the functions must sort, not trust input order
Y20 = np.array(RANKED_LABELS)[SHUFFLE]
S20 = np.array(RANKED_SCORES)[SHUFFLE]


def as_json(result) -> str:
    """Results must serialise as strict JSON (no NaN)."""
    if isinstance(result, tuple):
        return json.dumps([r.to_dict() for r in result], allow_nan=False)
    return json.dumps(result.to_dict(), allow_nan=False)


def test_lift_and_gains_by_decile_match_hand_counts():
    table = lift_table(Y20, S20)

    assert (table.rows, table.positives, table.churn_rate) == (20, 5, 0.25)
    assert [d.rows for d in table.deciles] == [2] * 10
    assert [d.positives for d in table.deciles] == [2, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    assert [d.churn_rate for d in table.deciles] == [1.0, 0.5, 0.5, 0.0, 0.5, 0, 0, 0, 0, 0]
    assert [d.lift for d in table.deciles] == [4.0, 2.0, 2.0, 0.0, 2.0, 0, 0, 0, 0, 0]
    assert [d.cumulative_gain for d in table.deciles] == pytest.approx(
        [0.4, 0.6, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    )
    assert table.top_decile_lift == 4.0
    assert json.loads(as_json(table))["deciles"][0] == {
        "decile": 1, "rows": 2, "positives": 2, "churn_rate": 1.0, "lift": 4.0, "cumulative_gain": 0.4
    }


def test_deciles_differ_by_at_most_one_row_and_ties_keep_input_order():
    y = np.zeros(23, dtype=int)
    y[0] = 1
    assert [d.rows for d in lift_table(y, np.linspace(1, 0, 23)).deciles] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]

    # five score levels of 20 rows, interleaved; among the 20 top-scored rows, the first 10 in input
    # order are negatives and the last 10 positives: decile 1 gets the negatives, decile 2 the positives
    scores = np.random.default_rng(2).permutation(np.repeat([0.9, 0.7, 0.5, 0.3, 0.1], 20))
    labels = np.zeros(100, dtype=int)
    labels[np.flatnonzero(scores == 0.9)[10:]] = 1
    assert [d.positives for d in lift_table(labels, scores).deciles] == [0, 10] + [0] * 8


def test_lift_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="no positives"):
        lift_table([0] * 10, np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="at least 10 rows"):
        lift_table([0, 1] * 4, np.linspace(0, 1, 8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        lift_table([0, 2] * 5, np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="NaN"):
        lift_table([0, 1] * 5, [np.nan] + [0.5] * 9)
    with pytest.raises(ValueError, match="rows like y_true"):
        lift_table([0, 1] * 5, [0.5] * 9)


def test_precision_and_recall_in_top_fractions():
    top = precision_recall_at_top(Y20, S20)

    assert [(t.fraction, t.contacted, t.positives_reached) for t in top] == [
        (0.05, 1, 1), (0.10, 2, 2), (0.20, 4, 3)
    ]
    assert [t.precision for t in top] == [1.0, 1.0, 0.75]
    assert [t.recall for t in top] == [0.2, 0.4, 0.6]
    as_json(top)


def test_top_rows_is_ceil_of_the_exact_product():
    def contacted(n, k):
        return precision_recall_at_top([1] + [0] * (n - 1), np.linspace(1, 0, n), [k])[0].contacted

    assert contacted(100, 0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floats
    assert contacted(21, 0.2) == 5  # ceil(4.2)
    assert contacted(7, 0.05) == 1  # ceil(0.35)


def test_expected_value_of_contacting_the_top_users():
    values = contact_expected_value(Y20, S20, contact_cost=10.0, saved_value=200.0, save_rate=0.25)

    # 1 * 0.25 * 200 - 1 * 10;  2 * 0.25 * 200 - 2 * 10;  3 * 0.25 * 200 - 4 * 10
    assert [v.expected_value for v in values] == [40.0, 80.0, 110.0]
    assert [v.expected_saves for v in values] == [0.25, 0.5, 0.75]
    assert [v.campaign_cost for v in values] == [10.0, 20.0, 40.0]
    as_json(values)
    with pytest.raises(ValueError, match="save_rate"):
        contact_expected_value(Y20, S20, contact_cost=10.0, saved_value=200.0, save_rate=1.5)


def test_a_perfectly_calibrated_toy():
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4
    report = calibration_report(y, p)

    filled = {i: b for i, b in enumerate(report.bins) if b.count}
    assert sorted(filled) == [2, 7]
    assert (filled[2].lower, filled[2].upper) == (0.2, 0.3)
    assert (filled[2].count, filled[2].mean_predicted, filled[2].observed_rate) == (4, 0.25, 0.25)
    assert (filled[7].count, filled[7].mean_predicted, filled[7].observed_rate) == (4, 0.75, 0.75)
    empty = report.bins[0]
    assert (empty.count, empty.mean_predicted, empty.observed_rate) == (0, None, None)
    # per group of four: one row off by 0.75 (0.5625) and three off by 0.25 (0.0625 each) -> 0.75
    assert report.brier_score == 1.5 / 8
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    assert json.loads(as_json(report))["bins"][0]["observed_rate"] is None


def test_reliability_bins_follow_their_reported_edges():
    report = calibration_report([0, 1, 0, 1], [0.0, 0.3, 0.999, 1.0])
    assert [b.count for b in report.bins] == [1, 0, 0, 1, 0, 0, 0, 0, 0, 2]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_report([0, 1], [0.5, 1.2])


def test_brier_score_equals_sklearn_on_random_data():
    rng = np.random.default_rng(3)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)


def test_auc_per_segment_reports_single_class_segments_as_undefined():
    segment = ["pro", "basic", "team", "basic", "enterprise", "basic", "pro", "team", "basic", "pro"]
    y = [0, 0, 0, 0, 1, 1, 0, 1, 1, 0]
    s = [0.9, 0.1, 0.5, 0.4, 0.7, 0.35, 0.2, 0.5, 0.8, 0.3]

    by_segment = {r.segment: r for r in roc_auc_by_segment(y, s, segment)}

    assert list(by_segment) == ["basic", "enterprise", "pro", "team"]
    # basic: positives 0.35, 0.8 against negatives 0.1, 0.4 -> 3 of 4 pairs ranked right
    assert by_segment["basic"].auc == 0.75
    assert by_segment["team"].auc == 0.5  # one tied pair counts one half
    assert by_segment["pro"].auc is None
    assert by_segment["pro"].undefined_reason == "only negatives among 3 rows: AUC is undefined"
    assert by_segment["enterprise"].auc is None
    assert "only positives" in by_segment["enterprise"].undefined_reason
    assert (by_segment["basic"].rows, by_segment["basic"].positives) == (4, 2)
    as_json(roc_auc_by_segment(y, s, np.array(segment)))
    with pytest.raises(ValueError, match="missing"):
        roc_auc_by_segment(y, s, segment[:-1] + [None])


def test_psi_of_identical_samples_is_zero():
    x = np.random.default_rng(0).normal(size=1000)
    assert numeric_psi(x, x.copy()) == 0.0
    assert categorical_psi(["a", "b", "b"], ["b", "a", "b"]) == 0.0


def test_psi_of_a_two_bin_shift():
    # shares 0.5/0.5 -> 0.8/0.2: 0.3 ln(0.8/0.5) + (-0.3) ln(0.2/0.5) = 0.3 ln 4
    expected = 0.3 * math.log(4)
    assert categorical_psi(["a"] * 50 + ["b"] * 50, ["a"] * 80 + ["b"] * 20) == pytest.approx(expected)
    assert numeric_psi([0.0] * 50 + [1.0] * 50, [0.0] * 80 + [1.0] * 20) == pytest.approx(expected)


def test_numeric_psi_bins_at_reference_deciles_with_the_epsilon_floor():
    reference = np.arange(100.0)  # deciles 9.9, 19.8, ...: ten bins of ten values
    current = np.r_[np.arange(50.0), np.arange(50.0)]  # bins 1-5 hold 0.2 each, bins 6-10 none
    # 5 * (0.2 - 0.1) ln 2  +  5 * (1e-4 - 0.1) ln(1e-4 / 0.1)
    expected = 0.5 * math.log(2) + 5 * (0.1 - PSI_EPSILON) * math.log(0.1 / PSI_EPSILON)
    assert numeric_psi(reference, current) == pytest.approx(expected, rel=1e-12)


def test_numeric_psi_counts_missing_values_as_their_own_bin():
    reference = np.arange(100.0)
    current = np.r_[reference, [np.nan] * 100]
    # every decile 0.1 -> 0.05, the NaN bin 1e-4 (floored) -> 0.5
    expected = 0.5 * math.log(2) + (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON)
    assert numeric_psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert numeric_psi(current, current[::-1]) == 0.0
    assert numeric_psi(pd.Series([1, 2, pd.NA], dtype="Int64"), [1.0, 2.0, np.nan]) == 0.0
    with pytest.raises(ValueError, match="infinite"):
        numeric_psi(reference, [np.inf, 1.0])


def test_numeric_psi_of_a_constant_feature_sees_shifts_either_way():
    # all of the reference at 5 -> all of the current on one side: 2 (1 - 1e-4) ln(1 / 1e-4)
    moved = 2 * (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON)
    assert numeric_psi([5.0] * 10, [5.0] * 7) == 0.0
    assert numeric_psi([5.0] * 10, [3.0] * 10) == pytest.approx(moved)
    assert numeric_psi([5.0] * 10, [7.0] * 10) == pytest.approx(moved)


def test_categorical_psi_counts_missing_as_a_category():
    # a, b, missing: 0.25, 0.25, 0.5 -> 0.5, 0.5, 1e-4 (floored)
    expected = 0.5 * math.log(2) + (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON)
    assert categorical_psi(["a", "b", None, np.nan], ["a", "b", "a", "b"]) == pytest.approx(expected)


def test_psi_for_every_column_and_the_drifted_ones():
    reference = pd.DataFrame(
        {
            "tenure_days": np.arange(100),
            "plan_tier": ["basic"] * 50 + ["pro"] * 50,
            "has_discount": [True, False] * 50,
        }
    )
    current = reference.assign(plan_tier=["basic"] * 80 + ["pro"] * 20)

    psi = psi_by_column(reference, current)

    assert psi == {"tenure_days": 0.0, "plan_tier": pytest.approx(0.3 * math.log(4)), "has_discount": 0.0}
    assert drifted_columns(psi) == ["plan_tier"]
    # "exceeds": a PSI equal to the threshold is not drift
    assert drifted_columns({"a": 0.05, "b": 0.3, "c": 0.25, "d": 0.2}) == ["b", "c"]
    assert drifted_columns({"a": 0.05, "b": 0.3}, threshold=0.01) == ["b", "a"]
    with pytest.raises(ValueError, match="missing from current"):
        psi_by_column(reference, current.drop(columns="plan_tier"))
    with pytest.raises(ValueError, match="tenure_days"):
        psi_by_column(reference, current.astype({"tenure_days": str}))


def test_weighted_auc_kernel_equals_sklearn_on_repeated_rows():
    rng = np.random.default_rng(5)
    y = (rng.random(300) < 0.3).astype(np.int64)
    score = np.round(y * 0.3 + rng.random(300), 1)  # rounded: many ties
    counts = rng.integers(0, 4, size=(4, 300))
    aucs = _auc_per_weighting(counts, y, score)
    for row, auc in zip(counts, aucs):
        rows = np.repeat(np.arange(300), row)
        assert auc == pytest.approx(roc_auc_score(y[rows], score[rows]), abs=1e-12)


@pytest.fixture(scope="module")
def holdout_2000():
    """Labels and two models on 2,000 rows: `strong` (AUC ~0.76) clearly beats `weak` (~0.59)."""
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(int)
    return y, y + rng.normal(0, 1, 2000), y + rng.normal(0, 3, 2000)


def test_a_clearly_better_challenger_has_an_interval_above_zero(holdout_2000):
    y, strong, weak = holdout_2000
    result = bootstrap_auc_delta(y, weak, strong, seed=1)

    assert result.champion_auc == pytest.approx(roc_auc_score(y, weak), abs=1e-12)
    assert result.challenger_auc == pytest.approx(roc_auc_score(y, strong), abs=1e-12)
    assert 0 < result.low < result.delta < result.high
    assert not result.within_noise
    assert (result.n_resamples, result.n_skipped, result.seed, result.confidence) == (1000, 0, 1, 0.95)
    as_json(result)


def test_a_model_against_itself_is_within_noise(holdout_2000):
    y, strong, _ = holdout_2000
    result = bootstrap_auc_delta(y, strong, strong.copy(), n_resamples=200)
    assert (result.delta, result.low, result.high) == (0.0, 0.0, 0.0)
    assert result.within_noise


def test_bootstrap_is_reproducible_with_its_seed(holdout_2000):
    y, strong, weak = holdout_2000
    first = bootstrap_auc_delta(y, weak, strong, n_resamples=200, seed=11)
    again = bootstrap_auc_delta(y, weak, strong, n_resamples=200, seed=11)
    other = bootstrap_auc_delta(y, weak, strong, n_resamples=200, seed=12)

    assert first == again
    assert (other.low, other.high) != (first.low, first.high)
    assert other.delta == first.delta


def test_single_class_resamples_are_skipped_and_counted():
    # two rows, one of each class: a resample holds both with probability 1/2
    result = bootstrap_auc_delta([0, 1], [0.2, 0.8], [0.8, 0.2], n_resamples=1000, seed=3)
    assert 300 < result.n_skipped < 700
    assert (result.champion_auc, result.challenger_auc) == (1.0, 0.0)
    assert (result.low, result.high) == (-1.0, -1.0)
    with pytest.raises(ValueError, match="single class"):
        bootstrap_auc_delta([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
