"""A trained version's evaluation, its model card, drift and campaign value, on small fixtures."""

import json

import numpy as np
import pytest

from churn_platform.constants import FEATURE_COLUMNS
from churn_platform.contact_economics import ContactEconomics
from churn_platform.ml.campaign_value import campaign_value_markdown, campaign_values
from churn_platform.ml.drift import population_drift
from churn_platform.ml.holdout_evaluation import evaluate_holdout, evaluation_markdown
from churn_platform.ml.model_card import DECISION_HEADING, model_card, with_decision
from churn_platform.ml.promotion import HoldoutScores
from churn_platform.ml.training import train
from churn_platform_tests.helpers import FAST_TRAINING_PARAMS


@pytest.fixture(scope="module")
def login_driven(training_frame):
    """Churn decided by days since last login alone: the evaluation must find that feature."""
    frame = training_frame.copy()
    frame["churned"] = (frame["days_since_last_login"] > 45).astype("int64")
    return train(frame, FAST_TRAINING_PARAMS)


def test_evaluation_numbers_agree_with_the_holdout(login_driven):
    evaluation = evaluate_holdout(login_driven.model, login_driven.holdout)
    assert evaluation.roc_auc == pytest.approx(login_driven.metrics["roc_auc"])
    assert evaluation.importance[0].feature == "days_since_last_login"  # the only signal
    assert evaluation.importance[0].auc_drop > 0.2
    assert {f.feature for f in evaluation.importance} == set(FEATURE_COLUMNS)
    assert sorted(t.segment for t in evaluation.tiers) == ["basic", "premium", "standard"]
    metrics = evaluation.metrics()
    assert metrics["top_decile_lift"] == evaluation.lift.top_decile_lift
    assert {"precision_at_5pct", "recall_at_10pct", "precision_at_20pct", "brier_score",
            "roc_auc_basic"} <= set(metrics)
    assert json.loads(json.dumps(evaluation.to_dict()))["lift"]["deciles"][0]["decile"] == 1
    markdown = evaluation_markdown(evaluation)
    assert "| top 10% |" in markdown and "| days_since_last_login |" in markdown


def test_a_missing_plan_tier_is_a_segment_of_its_own(trained):
    holdout = trained.holdout.copy()
    holdout.loc[holdout.index[:300], "plan_tier"] = None
    evaluation = evaluate_holdout(trained.model, holdout)
    unknown = next(t for t in evaluation.tiers if t.segment == "unknown")
    assert unknown.rows == 300


def test_the_model_card_holds_its_sections_and_takes_the_decision_once(login_driven):
    evaluation = evaluate_holdout(login_driven.model, login_driven.holdout)
    card = model_card(version="4", partition_key="2024-05-20", data_window="as-of 2024-04-28",
                      training_rows=9600, holdout_rows=2400, churn_rate=0.3, params={"max_iter": 30},
                      evaluation=evaluation, drift={"plan_tier": 0.01, "avg_session_length_7d": 0.5},
                      drift_reference="the holdout of champion v3", max_psi=0.2)
    for section in ("# churn_prediction v4", "## Population", "## Holdout metrics", "## Segments",
                    "## Calibration", "## Top features", "## Drift at registration", DECISION_HEADING):
        assert section in card, section
    assert "1. `days_since_last_login`" in card and "**shifted: avg_session_length_7d**" in card
    decided = with_decision(card, "**PROMOTED** over v3")
    assert decided.endswith(f"{DECISION_HEADING}\n**PROMOTED** over v3\n") and "Not decided yet" not in decided
    assert with_decision(decided, "**PROMOTED** over v3") == decided  # a retried step writes the same card


def test_drift_names_the_shifted_feature_and_the_score(training_frame, trained):
    reference = training_frame.iloc[:3000]
    same = training_frame.iloc[3000:6000]
    shifted = same.assign(payment_failure_rate=same["payment_failure_rate"] + 0.5)
    scores = trained.model.predict_proba(reference.loc[:, list(FEATURE_COLUMNS)])[:, 1]
    stable = population_drift(reference, same, scores, scores[::-1].copy(), max_psi=0.2)
    assert stable.passed and max(stable.feature_psi.values()) < 0.1 and stable.score_psi == pytest.approx(0.0)
    moved = population_drift(reference, shifted, scores, np.clip(scores + 0.3, 0, 1), max_psi=0.2)
    assert set(moved.drifted) == {"payment_failure_rate", "churn_probability"}  # largest PSI first
    assert moved.drifted == sorted(moved.drifted, key=lambda c: -moved.metadata()[f"psi_{c}"])
    assert "payment_failure_rate" in moved.summary() and moved.metadata()["max_feature_psi"] > 0.2


def test_campaign_value_side_by_side():
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0] * 2)
    good = np.linspace(1, 0, 20)  # ranks the churners... partly
    scores = HoldoutScores(labels=labels, challenger=good, champion=good[::-1].copy())
    economics = ContactEconomics(contact_cost=1.0, saved_customer_value=10.0, save_rate=0.5)
    values = campaign_values(scores, economics)
    challenger_top_10 = next(v for v in values["challenger"] if v.fraction == 0.1)
    # top 10 % of 20 = 2 users: rows 0 and 1 (both churners): 2 * 0.5 * 10 - 2 * 1 = 8
    assert (challenger_top_10.contacted, challenger_top_10.positives_reached) == (2, 2)
    assert challenger_top_10.expected_value == pytest.approx(8.0)
    assert next(v for v in values["champion"] if v.fraction == 0.1).positives_reached == 0
    markdown = campaign_value_markdown(values, economics)
    assert "| top 10% (2 users) | 2 | 8 | 0 | -2 |" in markdown and "CHURN_SAVE_RATE" in markdown
    assert list(campaign_values(HoldoutScores(labels, good, None), economics)) == ["challenger"]
    with pytest.raises(ValueError, match="CHURN_SAVE_RATE"):
        ContactEconomics(save_rate=1.5)
    assert ContactEconomics.from_env({"CHURN_CONTACT_COST": "2.5"}).contact_cost == 2.5


def test_the_batched_auc_is_sklearns():
    from sklearn.metrics import roc_auc_score

    from churn_platform.ml.holdout_evaluation import _aucs

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random((4, 500)), 2)  # rounded: many ties
    np.testing.assert_allclose(_aucs(labels, scores), [roc_auc_score(labels, row) for row in scores], atol=1e-12)
