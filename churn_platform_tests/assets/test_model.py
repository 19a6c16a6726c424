"""Training, registry, champion/challenger and scores through Dagster, on a real MLflow store."""

import dataclasses
import datetime as dt
import shutil

import dagster as dg
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn_platform.dev.cli import rollback
from churn_platform.definitions import build_definitions
from churn_platform.jobs import TRAINING_JOB
from churn_platform.ml.mlflow_io import connect, version_number
from churn_platform.ml.promotion import get_champion
from churn_platform.resources import build_resources, build_warehouse
from churn_platform_tests.helpers import K, K_MINUS_4, query

MODEL_STEPS = ["churn_model", "promotion_decision", "churn_scores"]
WEAK_MODEL = {"ops": {"churn_model": {"config": {"max_iter": 1, "max_leaf_nodes": 2, "learning_rate": 0.01}}}}


@pytest.fixture
def trainable(demo_settings, training_inputs):
    """A private copy of the training inputs and a fresh MLflow store."""
    shutil.copy(training_inputs, demo_settings.warehouse_path)
    settings = demo_settings.with_overrides(
        gate_thresholds=dataclasses.replace(demo_settings.gate_thresholds, min_auc=0.6)
    )
    return settings, dg.DagsterInstance.ephemeral()


def train(settings, instance, run_config=None):
    job = build_definitions(settings).resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(a) for a in MODEL_STEPS}
    )
    return job.execute_in_process(
        partition_key=K, instance=instance, run_config=run_config or {}, raise_on_error=False
    )


def metadata(result, asset: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset)
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_first_training_promotes_and_scores_come_from_the_champion(trainable):
    settings, instance = trainable
    result = train(settings, instance)
    assert result.success
    model = metadata(result, "churn_model")
    assert model["training_as_of"] == "2024-04-28"  # features of K-4 joined with their labels
    labelled = query(settings, "SELECT count(*) FROM churn_labels WHERE as_of_date = '2024-04-28'")[0][0]
    assert model["rows"] == pytest.approx(0.2 * labelled, abs=1)  # holdout rows
    assert model["roc_auc"] >= 0.75
    decision = metadata(result, "promotion_decision")
    assert decision["promoted"] is True and decision["previous_champion"] == "none"
    assert "no champion" in decision["reason"].lower()
    champion = get_champion(connect(settings.mlflow_tracking_uri))
    assert version_number(champion) == model["model_version"] == decision["champion_version"]
    scores = query(settings, "SELECT count(*), count(DISTINCT user_id), min(model_version), max(model_version), "
                   "min(churn_probability), max(churn_probability) FROM churn_scores WHERE as_of_date = '2024-05-26'")
    features = query(settings, "SELECT count(*) FROM user_features WHERE as_of_date = '2024-05-26'")[0][0]
    n, distinct, v_min, v_max, p_min, p_max = scores[0]
    assert n == distinct == features and v_min == v_max == model["model_version"]
    assert 0.0 <= p_min < p_max <= 1.0

    # The evaluation of the version is on its materialization: numbers, tables and the plots inline.
    assert model["top_decile_lift"] > 2 and 0 < model["brier_score"] < 0.25
    assert model["evaluation"].count("data:image/png;base64,") == 4 and "AUC lost when shuffled" in model["evaluation"]
    assert model["evaluation_seconds"] < model["fit_seconds"] + 5
    # Every score row carries its risk decile and reasons; the CRM's copy on S3 is the table, row for row.
    deciles = dict(query(settings, "SELECT risk_decile, count(*) FROM churn_scores GROUP BY 1"))
    assert set(deciles) == set(range(1, 11)) and max(deciles.values()) - min(deciles.values()) <= 1
    assert query(settings, "SELECT count(*) FROM churn_scores WHERE reason_1 IS NOT NULL")[0][0] > n / 2
    table = query(settings, "SELECT user_id, churn_probability, risk_decile, model_version FROM churn_scores "
                  "WHERE as_of_date = '2024-05-26' ORDER BY user_id")
    published = build_resources(settings)["score_publisher"].read(dt.date(2024, 5, 26)).sort_values("user_id")
    assert list(published.itertuples(index=False, name=None)) == table
    drift = next(e for e in result.get_asset_check_evaluations() if e.check_name == "churn_scores_population_drift")
    assert drift.passed and drift.severity == dg.AssetCheckSeverity.WARN


def test_a_drifted_week_warns_naming_the_feature_and_still_publishes(trainable):
    settings, instance = trainable
    assert train(settings, instance).success
    with build_warehouse(settings).connect() as con:  # this week's users suddenly spend 3x as long per session
        con.execute("UPDATE user_features SET avg_session_length_7d = avg_session_length_7d * 3 "
                    "WHERE as_of_date = '2024-05-26'")
    rescored = _materialize(settings, instance, "churn_scores", K)
    assert rescored.success  # a warning, not a gate: the retention team still gets this week's scores
    (drift,) = rescored.get_asset_check_evaluations()
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["drifted"].value.split(", ")[0] == "avg_session_length_7d"
    assert drift.metadata["psi_avg_session_length_7d"].value > 0.2
    assert drift.metadata["psi_days_since_last_login"].value < 0.2


def test_worse_challenger_is_kept_out_and_better_one_promoted_then_rolled_back(trainable):
    settings, instance = trainable
    client = connect(settings.mlflow_tracking_uri)
    weak = train(settings, instance, WEAK_MODEL)
    assert weak.success
    weak_version = metadata(weak, "churn_model")["model_version"]
    assert version_number(get_champion(client)) == weak_version  # first model: no champion to beat

    strong = train(settings, instance)
    assert strong.success
    decision = metadata(strong, "promotion_decision")
    assert decision["promoted"] is True and decision["delta"] >= 0.005
    strong_version = decision["champion_version"]
    assert strong_version != weak_version

    again_weak = train(settings, instance, WEAK_MODEL)
    assert again_weak.success
    decision = metadata(again_weak, "promotion_decision")
    assert decision["promoted"] is False and decision["champion_version"] == strong_version
    assert decision["challenger_auc"] < decision["champion_auc"]  # same holdout rows for both
    assert query(settings, "SELECT DISTINCT model_version FROM churn_scores") == [(strong_version,)]

    restored = rollback(settings)
    assert (restored.rolled_back_version, restored.restored_version) == (strong_version, weak_version)
    assert version_number(get_champion(client)) == weak_version
    tags = client.get_model_version("churn_prediction", strong_version).tags
    assert any("rolled_back" in key for key in tags)


def test_failed_gate_registers_nothing_and_moves_no_alias(trainable):
    settings, instance = trainable
    strict = settings.with_overrides(gate_thresholds=dataclasses.replace(settings.gate_thresholds, min_training_rows=10**6))
    result = train(strict, instance)
    assert not result.success
    assert "the gate needs 1000000" in result.failure_data_for_node("churn_model").error.message
    executed = {e.step_key for e in result.all_events if e.is_step_start}
    assert executed == {"churn_model"}
    client = connect(settings.mlflow_tracking_uri)
    assert client.search_model_versions("name='churn_prediction'") == []
    assert get_champion(client) is None


def test_auc_floor_blocks_promotion(trainable):
    settings, instance = trainable
    floor = settings.with_overrides(gate_thresholds=dataclasses.replace(settings.gate_thresholds, min_auc=0.99))
    result = train(floor, instance)
    assert not result.success
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "churn_model_auc_floor")
    assert not evaluation.passed
    executed = {e.step_key for e in result.all_events if e.is_step_start}
    assert "promotion_decision" not in executed and "churn_scores" not in executed
    assert get_champion(connect(settings.mlflow_tracking_uri)) is None


def _materialize(settings, instance, asset: str, partition: str):
    return build_definitions(settings).resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(asset)}
    ).execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)


def test_realized_performance_joins_published_scores_with_their_matured_labels(trainable):
    settings, instance = trainable
    assert train(settings, instance).success
    # The scores published for as-of 2024-04-28 (week K-4); churn_labels[K] has that date's labels.
    assert _materialize(settings, instance, "churn_scores", K_MINUS_4).success
    result = _materialize(settings, instance, "realized_performance", K)
    assert result.success
    realized = metadata(result, "realized_performance")
    joined = pd.DataFrame(query(settings, "SELECT s.churn_probability, l.churned FROM churn_scores s JOIN churn_labels l "
                                "USING (as_of_date, user_id) WHERE as_of_date = '2024-04-28'"), columns=["p", "y"])
    assert realized["as_of_date"] == "2024-04-28" and realized["rows"] == len(joined)
    assert realized["realized_roc_auc"] == pytest.approx(roc_auc_score(joined.y, joined.p))
    assert realized["realized_churn_rate"] == pytest.approx(joined.y.mean())
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    client = connect(settings.mlflow_tracking_uri)
    version = client.get_model_version("churn_prediction", realized["model_version"])
    (point,) = client.get_metric_history(version.run_id, "realized_roc_auc")
    assert point.value == pytest.approx(realized["realized_roc_auc"])
    assert point.step == (dt.date(2024, 4, 28) - dt.date(1970, 1, 1)).days

    # Scores that did not come true (the ranking reversed) warn, naming the version.
    with build_warehouse(settings).connect() as con:
        con.execute("UPDATE churn_scores SET churn_probability = 1 - churn_probability WHERE as_of_date = '2024-04-28'")
    result = _materialize(settings, instance, "realized_performance", K)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["below"].value == f"v{realized['model_version']}"


def test_weekly_job_selects_the_whole_flow(settings):
    job = build_definitions(settings).resolve_job_def(TRAINING_JOB)
    assert {k.path[-1] for k in job.asset_layer.executable_asset_keys} == {
        "user_features", "churn_labels", "churn_model", "promotion_decision", "churn_scores"
    }
