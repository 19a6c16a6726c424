"""Scoring a week: risk deciles, reasons on every row, the same table rows as the model's own numbers."""

import numpy as np
import pytest

from churn_platform.ml.scoring import risk_deciles


def test_risk_deciles_split_twenty_users_two_per_decile():
    probability = np.array([0.05, 0.91, 0.40, 0.77, 0.12, 0.63, 0.30, 0.99, 0.21, 0.55,
                            0.08, 0.85, 0.45, 0.70, 0.15, 0.60, 0.35, 0.95, 0.25, 0.50])
    deciles = risk_deciles(probability)
    assert deciles.dtype == np.int32
    assert dict(zip(*np.unique(deciles, return_counts=True))) == {d: 2 for d in range(1, 11)}
    # by hand: 0.99 and 0.95 are the riskiest two, 0.08 and 0.05 the safest two
    assert deciles[[7, 17]].tolist() == [1, 1] and deciles[[1, 11]].tolist() == [2, 2]
    assert deciles[[0, 10]].tolist() == [10, 10]


def test_risk_deciles_break_ties_by_user_id_else_by_position():
    tied = np.full(10, 0.5)
    assert risk_deciles(tied).tolist() == list(range(1, 11))  # by position
    users = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert risk_deciles(tied, users).tolist() == list(range(10, 0, -1))  # lowest user id first
    # a higher probability still wins over a lower user id; reordering rows changes no user's decile
    probability, ids = np.array([0.2, 0.9, 0.2, 0.2, 0.9]), np.array([5, 4, 3, 2, 1])
    by_user = dict(zip(ids, risk_deciles(probability, ids)))
    assert by_user == {1: 1, 4: 3, 2: 5, 3: 7, 5: 9}
    shuffle = np.array([3, 0, 4, 2, 1])
    assert dict(zip(ids[shuffle], risk_deciles(probability[shuffle], ids[shuffle]))) == by_user


def test_risk_deciles_refuse_what_cannot_be_ranked():
    assert risk_deciles([]).tolist() == []
    assert risk_deciles([0.3, 0.2, 0.1]).tolist() == [1, 4, 7]
    with pytest.raises(ValueError, match="finite"):
        risk_deciles([0.2, float("nan")])
    with pytest.raises(ValueError, match="user ids"):
        risk_deciles([0.2, 0.1], [1])


def test_score_users_carries_the_models_probability_decile_and_reasons(trained, training_frame):
    import duckdb

    from churn_platform.ml.reasons import contributions, top_reasons
    from churn_platform.ml.scoring import DECILE_SQL, SCORE_COLUMNS, score_users
    from churn_platform.ml.training import prepare_features

    features = training_frame.drop(columns=["churned"]).sample(frac=1.0, random_state=1)  # any row order
    scores = score_users(trained.model, features, "7")
    assert tuple(scores.columns) == SCORE_COLUMNS and len(scores) == len(features)
    prepared = prepare_features(features)
    np.testing.assert_array_equal(scores["churn_probability"], trained.model.predict_proba(prepared)[:, 1])
    expected = top_reasons(contributions(trained.model, prepared)).reset_index(drop=True)
    assert scores[["reason_1", "reason_2", "reason_3"]].equals(expected.astype(object))
    assert scores["reason_1"].notna().mean() > 0.5  # most users have something pushing them up
    assert (scores["model_version"] == "7").all()
    # the riskiest decile holds the highest probabilities; Spark's SQL rule ranks identically
    assert scores.loc[scores.risk_decile == 1, "churn_probability"].min() >= scores.loc[
        scores.risk_decile == 2, "churn_probability"].max()
    ranked = duckdb.sql(f"SELECT user_id, {DECILE_SQL} AS d FROM scores").df()
    assert dict(zip(ranked.user_id, ranked.d)) == dict(zip(scores.user_id, scores.risk_decile))
