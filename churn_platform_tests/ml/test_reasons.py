import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from churn_platform.constants import FEATURE_COLUMNS
from churn_platform.dev.synthetic_training import synthetic_training_frame
from churn_platform.events import PLAN_TIERS
from churn_platform.ml.reasons import Contributions, contributions, top_reasons
from churn_platform.ml.training import (
    TrainingParams,
    baseline_estimator,
    prepare_features,
    split_training_set,
    train,
)

# Deeper trees than the default so categorical splits send two tiers one way.
BRANCHY_PARAMS = TrainingParams(max_iter=30, max_leaf_nodes=8, min_samples_leaf=20)


def _with_tier_signal_and_gaps(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Churners lean to 'basic' (so the trees split on plan_tier); some values are missing."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    churner = frame["churned"].to_numpy() == 1
    frame.loc[churner & (rng.random(len(frame)) < 0.5), "plan_tier"] = "basic"
    frame.loc[rng.random(len(frame)) < 0.05, "plan_tier"] = None
    frame["days_since_last_login"] = frame["days_since_last_login"].astype("float64")
    frame.loc[rng.random(len(frame)) < 0.05, "days_since_last_login"] = np.nan
    return frame


def _scoring_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Real rows plus each tier, a missing tier and missing numbers, in every combination."""
    base = prepare_features(frame.head(200))
    variants = []
    for tier in (*PLAN_TIERS, None):
        rows = base.head(20).assign(plan_tier=tier)
        for column in ("days_since_last_login", "avg_session_length_7d", "support_tickets_90d"):
            variants.append(rows.head(5).assign(**{column: np.nan}))
        variants.append(rows)
    all_missing = base.head(3).assign(**{c: np.nan for c in FEATURE_COLUMNS if c != "plan_tier"})
    return prepare_features(pd.concat([base, *variants, all_missing], ignore_index=True))


def _assert_exact(model, features):
    result = contributions(model, features)
    assert list(result.values.columns) == list(FEATURE_COLUMNS)
    assert result.values.dtypes.eq("float64").all()
    assert result.values.index.equals(features.index)
    np.testing.assert_allclose(
        result.bias + result.values.sum(axis=1).to_numpy(),
        model.decision_function(features),
        rtol=0,
        atol=1e-9,
    )
    return result


@pytest.fixture(scope="module")
def tiered_frame():
    return _with_tier_signal_and_gaps(synthetic_training_frame(n_rows=3_000, seed=0), seed=0)


@pytest.fixture(scope="module")
def branchy_model(tiered_frame):
    return train(tiered_frame, BRANCHY_PARAMS).model


def test_contributions_sum_to_the_raw_score_for_every_row(branchy_model, tiered_frame):
    nodes = [p.nodes for (p,) in branchy_model.named_steps["classify"]._predictors]
    assert sum(int(n["is_categorical"].sum()) for n in nodes) > 0  # bitsets are exercised
    features = _scoring_rows(tiered_frame)

    result = _assert_exact(branchy_model, features)

    assert (result.values["plan_tier"] != 0).any()
    assert np.unique(result.bias).size == 1


def test_the_routing_is_checked_against_the_probability_the_caller_scored(branchy_model, tiered_frame):
    features = _scoring_rows(tiered_frame)
    probability = branchy_model.predict_proba(features)[:, 1]
    checked = contributions(branchy_model, features, probability)
    pd.testing.assert_frame_equal(checked.values, contributions(branchy_model, features).values)
    wrong = probability.copy()
    wrong[7] += 0.01  # a prediction the trees' routing cannot reproduce
    with pytest.raises(RuntimeError, match="row 7"):
        contributions(branchy_model, features, wrong)


def test_a_tier_missing_from_training_is_scored_as_missing_by_the_trees(tiered_frame):
    without_standard = tiered_frame[tiered_frame["plan_tier"] != "standard"]
    model = train(without_standard, BRANCHY_PARAMS).model
    tier_encoder = model.named_steps["classify"]._preprocessor.named_transformers_["encoder"]
    assert 1.0 not in tier_encoder.categories_[0].tolist()  # the code of "standard"

    _assert_exact(model, _scoring_rows(tiered_frame))


def test_bias_is_the_mean_training_score(branchy_model, tiered_frame):
    """Internal node values are count-weighted means of their children, so roots average the tree."""
    classify = branchy_model.named_steps["classify"]
    training_rows = split_training_set(tiered_frame, BRANCHY_PARAMS)[0]

    bias = contributions(branchy_model, prepare_features(tiered_frame)).bias[0]

    assert bias == pytest.approx(branchy_model.decision_function(training_rows).mean(), abs=1e-9)
    assert bias != pytest.approx(classify._baseline_prediction.item())


@pytest.fixture(scope="module")
def login_only_frame():
    """Churn is exactly 'no login for over 60 days'; the other features are noise."""
    frame = synthetic_training_frame(n_rows=2_000, seed=1)
    return frame.assign(churned=(frame["days_since_last_login"] > 60).astype("int64"))


def test_the_only_driver_is_reason_1_and_unused_features_get_exactly_zero(login_only_frame):
    model = train(login_only_frame, TrainingParams(max_iter=20)).model
    features = prepare_features(login_only_frame)

    result = _assert_exact(model, features)
    reasons = top_reasons(result)

    others = [c for c in FEATURE_COLUMNS if c != "days_since_last_login"]
    assert (result.values[others] == 0.0).all().all()
    high_risk = features["days_since_last_login"] > 60
    assert high_risk.sum() > 50
    assert (reasons.loc[high_risk, "reason_1"] == "days_since_last_login").all()
    assert reasons.loc[high_risk, ["reason_2", "reason_3"]].isna().all().all()
    assert reasons.loc[features["days_since_last_login"] < 20, "reason_1"].isna().all()


def test_a_single_stump_decomposes_as_worked_out_by_hand(login_only_frame):
    """One split: contribution = leaf value - count-weighted mean of the two leaves."""
    model = train(login_only_frame, TrainingParams(max_iter=1, max_leaf_nodes=2)).model
    classify = model.named_steps["classify"]
    (stump,) = classify._predictors[0]
    root, left, right = stump.nodes
    assert root["feature_idx"] == 1  # plan_tier moves to the trees' column 0
    mean = (left["count"] * left["value"] + right["count"] * right["value"]) / root["count"]
    features = prepare_features(login_only_frame).iloc[[0, 1]].copy()
    features["days_since_last_login"] = [root["num_threshold"], root["num_threshold"] + 1]

    result = contributions(model, features)

    assert result.bias == pytest.approx([classify._baseline_prediction.item() + mean] * 2)
    assert result.values["days_since_last_login"].tolist() == pytest.approx(
        [left["value"] - mean, right["value"] - mean]
    )


def _hand_made(rows: list[list[float]]) -> Contributions:
    values = pd.DataFrame(rows, columns=list(FEATURE_COLUMNS), index=[10, 11, 12, 13])
    return Contributions(bias=np.zeros(len(rows)), values=values)


def test_top_reasons_orders_positive_contributions_pads_with_none_and_breaks_ties_by_contract_order():
    contrib = _hand_made(
        [
            [0.5, 0.0, 0.2, 0.5, -1.0, 0.1, 0.0],  # tie: days_since_last_login before failure rate
            [-0.1, -0.2, -0.3, 0.0, -0.5, -0.6, -0.7],  # nothing pushed the score up
            [-0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3],  # only plan_tier
            [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # all tied
        ]
    )

    reasons = top_reasons(contrib)
    top_five = top_reasons(contrib, k=5)

    assert list(reasons.columns) == ["reason_1", "reason_2", "reason_3"]
    assert list(reasons.index) == [10, 11, 12, 13]
    assert reasons.loc[10].tolist() == [
        "days_since_last_login",
        "payment_failure_rate",
        "payment_failures_30d",
    ]
    assert reasons.loc[11].tolist() == [None, None, None]
    assert reasons.loc[12].tolist() == ["plan_tier", None, None]
    assert reasons.loc[13].tolist() == list(FEATURE_COLUMNS[:3])
    assert top_five.loc[10].tolist() == [
        "days_since_last_login",
        "payment_failure_rate",
        "payment_failures_30d",
        "support_tickets_90d",
        None,
    ]
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_reasons(contrib, k=0)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (baseline_estimator(), "'classify' must be a HistGradientBoostingClassifier"),
        (HistGradientBoostingClassifier(), "Pipeline"),
        ("not a model", "Pipeline"),
    ],
    ids=["gradient_boosting_pipeline", "bare_classifier", "string"],
)
def test_a_model_of_another_shape_is_refused(model, message, login_only_frame):
    with pytest.raises(TypeError, match=message):
        contributions(model, prepare_features(login_only_frame.head(5)))
