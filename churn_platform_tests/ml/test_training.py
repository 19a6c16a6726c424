import numpy as np
import pandas as pd
import pytest

from churn_platform.constants import FEATURE_COLUMNS, LABEL_COLUMN
from churn_platform.events import PLAN_TIERS
from churn_platform.ml.training import (
    TrainingParams,
    build_estimator,
    evaluate,
    prepare_features,
    baseline_estimator,
    split_training_set,
)


def test_split_is_stratified_80_20_with_fixed_plan_tier_categories(training_frame):
    X_train, X_test, y_train, y_test = split_training_set(training_frame)

    assert len(X_test) == pytest.approx(0.2 * len(training_frame), abs=1)
    assert list(X_train.columns) == list(FEATURE_COLUMNS)
    assert y_train.mean() == pytest.approx(y_test.mean(), abs=0.002)
    assert list(X_train["plan_tier"].cat.categories) == list(PLAN_TIERS)
    again = split_training_set(training_frame)
    assert X_test.index.equals(again[1].index)  # random_state 42: same rows every time


def test_unknown_plan_tier_is_rejected_not_turned_into_missing(training_frame):
    bad = training_frame.head(10).assign(plan_tier="gold")
    with pytest.raises(ValueError, match="gold"):
        prepare_features(bad)


def test_nullable_warehouse_integers_become_missing_values(training_frame):
    frame = training_frame.head(10).astype({"support_tickets_90d": "Int32"})
    frame.loc[frame.index[0], "support_tickets_90d"] = pd.NA
    features = prepare_features(frame)
    assert features["support_tickets_90d"].dtype == "float64"
    assert features["support_tickets_90d"].isna().sum() == 1


def test_missing_feature_column_is_rejected(training_frame):
    with pytest.raises(ValueError, match="support_tickets_90d"):
        prepare_features(training_frame.drop(columns="support_tickets_90d"))


def test_default_model_auc_in_sane_band(trained):
    assert 0.75 < trained.metrics["roc_auc"] < 0.99
    assert set(trained.metrics) == {"roc_auc", "pr_auc", "log_loss", "rows", "churn_rate"}
    assert trained.metrics["rows"] == len(trained.holdout)
    assert LABEL_COLUMN in trained.holdout.columns


def test_model_scores_plain_strings_and_missing_values(trained):
    frame = trained.holdout[list(FEATURE_COLUMNS)].head(50)
    as_strings = frame.astype({"plan_tier": "object"})
    np.testing.assert_allclose(
        trained.model.predict_proba(as_strings), trained.model.predict_proba(frame)
    )
    with_gaps = as_strings.copy()
    with_gaps.loc[with_gaps.index[:5], ["plan_tier", "days_since_last_login"]] = None
    assert np.isfinite(trained.model.predict_proba(with_gaps)).all()


def test_evaluate_propagates_errors_on_a_single_class_holdout(trained):
    X = trained.holdout[list(FEATURE_COLUMNS)].head(20)
    with pytest.raises(ValueError, match="single class"):
        evaluate(trained.model, X, pd.Series(np.zeros(len(X), dtype=int)))


def test_baseline_estimator_is_the_origin_lessons_configuration():
    classifier = baseline_estimator()[-1]
    assert (classifier.n_estimators, classifier.learning_rate, classifier.random_state) == (300, 0.05, 42)


def test_params_reach_the_estimator():
    classifier = build_estimator(TrainingParams(max_iter=7, learning_rate=0.3))[-1]
    assert (classifier.max_iter, classifier.learning_rate, classifier.random_state) == (7, 0.3, 42)


def test_runs_may_tune_every_hyperparameter_but_not_the_split():
    tunable = TrainingParams.tunable()
    assert set(tunable) == set(TrainingParams().as_dict()) - {"test_size", "random_state"}
    assert tunable["max_iter"] == (int, 200) and tunable["learning_rate"] == (float, 0.03)


def test_holdout_users_are_stable_across_weeks(training_frame):
    """Next week's data (mostly the same users) keeps this week's training users out of its holdout."""
    this_week = training_frame
    next_week = training_frame.sample(frac=0.95, random_state=1)
    next_week = next_week.assign(days_since_last_login=next_week["days_since_last_login"] + 1)
    train_users = set(this_week.loc[split_training_set(this_week)[0].index, "user_id"])
    holdout_users = set(next_week.loc[split_training_set(next_week)[1].index, "user_id"])
    assert len(train_users & holdout_users) / len(holdout_users) < 0.02
