import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow.exceptions import MlflowException

from churn_platform.constants import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from churn_platform.ml.artifacts import load_holdout
from churn_platform.ml.champion_lease import ChampionChangedError, lease_name
from churn_platform.ml.evaluation import bootstrap_auc_delta
from churn_platform.ml.mlflow_io import version_number
from churn_platform.ml.promotion import (
    NoPreviousChampionError,
    Promotion,
    decide_promotion,
    get_champion,
    get_model_version,
    holdout_aucs,
    holdout_scores,
    promote,
    rollback,
)
from churn_platform.resources.mlflow_registry import MlflowRegistry
from churn_platform_tests.helpers import register_training


def test_no_champion_promotes():
    decision = decide_promotion(0.61, None)
    assert decision.promote and decision.delta is None
    assert "no champion" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.820, 0.800, True),
        (0.804, 0.800, False),
        (0.700, 0.800, False),
        (0.705, 0.700, True),  # exactly the threshold, though 0.705 - 0.700 < 0.005 in floats
        (0.805, 0.800, True),
        (0.7049, 0.700, False),
    ],
)
def test_threshold(challenger, champion, promote):
    decision = decide_promotion(challenger, champion)
    assert decision.promote is promote
    assert decision.delta == pytest.approx(challenger - champion)
    assert ("promoted" if promote else "champion kept") in decision.reason


def test_min_delta_is_configurable():
    assert not decide_promotion(0.81, 0.80, min_delta=0.02).promote
    assert decide_promotion(0.81, 0.80, min_delta=0.0).promote


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.1])
def test_invalid_auc_is_an_error(bad):
    with pytest.raises(ValueError):
        decide_promotion(bad, 0.8)
    with pytest.raises(ValueError):
        decide_promotion(0.8, bad)


def run_promotion(client, logged):
    """The promotion step as the Dagster asset runs it."""
    challenger = get_model_version(client, logged.model_version)
    champion = get_champion(client)
    holdout = load_holdout(client, logged.run_id)
    scores = holdout_scores(client, challenger, champion, holdout)
    challenger_auc, champion_auc = holdout_aucs(scores)
    interval = None if scores.champion is None else bootstrap_auc_delta(scores.labels, scores.champion, scores.challenger)
    promotion = promote(client, decide_promotion(challenger_auc, champion_auc, interval=interval), challenger, champion)
    return promotion.decision, promotion.report


def version_tags(client, version):
    return client.get_model_version(REGISTERED_MODEL_NAME, version).tags


def test_promotion_flow(mlflow_store, trained, weak_trained, inverted_trained):
    client, artifact_root = mlflow_store
    assert get_champion(client) is None  # no registered model yet

    first = register_training(client, artifact_root, weak_trained, "2024-02-05")
    decision, report = run_promotion(client, first)
    assert decision.promote and decision.champion_auc is None
    assert version_number(get_champion(client)) == first.model_version
    assert "**PROMOTED**" in report and "| Champion before | `none` |" in report
    assert version_tags(client, first.model_version)["previous_champion_version"] == "none"

    worse = register_training(client, artifact_root, inverted_trained, "2024-02-12")
    decision, report = run_promotion(client, worse)
    assert not decision.promote
    assert version_number(get_champion(client)) == first.model_version
    assert "**KEPT CHAMPION**" in report
    assert version_tags(client, worse.model_version)["decision"] == "rejected"

    better = register_training(client, artifact_root, trained, "2024-02-19")
    decision, report = run_promotion(client, better)
    assert decision.promote and decision.delta >= 0.005
    assert version_number(get_champion(client)) == better.model_version
    tags = version_tags(client, better.model_version)
    assert tags["decision"] == "promoted"
    assert tags["previous_champion_version"] == first.model_version
    assert float(tags["challenger_auc"]) == pytest.approx(decision.challenger_auc, abs=1e-6)
    assert float(tags["champion_auc"]) == pytest.approx(decision.champion_auc, abs=1e-6)
    assert version_tags(client, first.model_version)["replaced_by_version"] == better.model_version
    recorded = json.loads(tags["delta_interval"])  # the bootstrap interval is part of the decision record
    assert recorded == decision.interval.to_dict() and recorded["low"] > 0 and not recorded["within_noise"]
    assert "95% paired bootstrap" in report and "excludes 0" in decision.reason
    card = client.get_model_version(REGISTERED_MODEL_NAME, better.model_version).description
    assert card.startswith(f"# churn_prediction v{better.model_version}") and "**PROMOTED**" in card
    assert "Not decided yet" not in card and f"Model card: `model_card.md` on MLflow run `{better.run_id}`" in report
    assert "report.md" in {
        os.path.basename(a.path) for a in client.list_artifacts(better.run_id, "promotion")
    }
    assert client.get_model_version(REGISTERED_MODEL_NAME, better.model_version).aliases == [
        CHAMPION_ALIAS
    ]


def test_a_difference_within_noise_is_reported_as_such(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    run_promotion(client, register_training(client, artifact_root, weak_trained, "2024-02-05"))
    same = register_training(client, artifact_root, weak_trained, "2024-02-12")  # the same model again
    decision, report = run_promotion(client, same)
    assert not decision.promote and decision.interval.within_noise
    assert decision.interval.low <= 0 <= decision.interval.high
    assert "within noise" in decision.reason and "within noise" in report
    again = json.loads(version_tags(client, same.model_version)["delta_interval"])
    assert again == decision.interval.to_dict()


def test_promote_refuses_when_the_champion_moved_since_the_comparison(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    first = register_training(client, artifact_root, weak_trained, "2024-02-05")
    second = register_training(client, artifact_root, weak_trained, "2024-02-12")
    challenger = client.get_model_version(REGISTERED_MODEL_NAME, second.model_version)
    # Compared while there was no champion; then someone else promoted the first version.
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, first.model_version)
    with pytest.raises(ChampionChangedError, match="rerun the comparison"):
        promote(client, decide_promotion(0.9, None), challenger, previous_champion=None)
    assert version_number(get_champion(client)) == first.model_version
    assert "decision" not in version_tags(client, second.model_version)


def test_a_step_that_runs_again_gets_the_recorded_decision(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    logged = register_training(client, artifact_root, weak_trained)
    run_promotion(client, logged)
    tags_before = version_tags(client, logged.model_version)

    decision, report = run_promotion(client, logged)  # now compared with itself: delta 0

    assert decision.promote and "**PROMOTED**" in report and "| Champion before | `none` |" in report
    assert version_tags(client, logged.model_version) == tags_before
    assert version_number(get_champion(client)) == logged.model_version


def test_an_old_decision_run_again_changes_nothing(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    v1, v2, v3 = (
        get_model_version(client, register_training(client, artifact_root, weak_trained, key).model_version)
        for key in ("2024-02-05", "2024-02-12", "2024-02-19")
    )
    forced = decide_promotion(0.9, None)
    promote(client, forced, v1, None)
    promote(client, forced, v2, v1)
    promote(client, forced, v3, v2)
    tags_before = {v: version_tags(client, v) for v in ("1", "2", "3")}

    again = promote(client, decide_promotion(0.5, 0.9), v2, v3)  # partition of v2 rematerialized

    assert again.decision.promote and again.previous_champion_version == "1"
    assert version_number(get_champion(client)) == "3"
    assert {v: version_tags(client, v) for v in ("1", "2", "3")} == tags_before


def test_a_version_compared_with_itself_is_not_its_own_predecessor(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    logged = register_training(client, artifact_root, weak_trained)
    version = get_model_version(client, logged.model_version)
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, logged.model_version)  # by hand
    with pytest.raises(ValueError, match="never its own predecessor"):
        promote(client, decide_promotion(0.7, 0.7), version, version)
    assert "decision" not in version_tags(client, logged.model_version)


def fail_once(monkeypatch, client, method: str, when) -> None:
    """The next call of client.<method> matching `when` dies, as a killed worker would, before the write."""
    real = getattr(client, method)
    failed = []

    def dies_once(*args, **kwargs):
        if not failed and when(*args):
            failed.append(args)
            raise RuntimeError(f"worker lost during {method}{args}")
        return real(*args, **kwargs)

    monkeypatch.setattr(client, method, dies_once)


def test_a_retry_after_the_alias_moved_finishes_the_same_decision(
    mlflow_store, weak_trained, trained, monkeypatch
):
    client, artifact_root = mlflow_store
    first = register_training(client, artifact_root, weak_trained, "2024-02-05")
    run_promotion(client, first)
    better = register_training(client, artifact_root, trained, "2024-02-12")
    fail_once(monkeypatch, client, "set_model_version_tag", lambda name, version, key, value: key == "replaced_by_version")

    with pytest.raises(RuntimeError, match="worker lost"):
        run_promotion(client, better)
    assert version_number(get_champion(client)) == better.model_version  # moved, not yet recorded on v1
    assert "replaced_by_version" not in version_tags(client, first.model_version)

    decision, report = run_promotion(client, better)  # the step's retry: the champion now is `better`

    assert decision.promote and f"| Champion before | `v{first.model_version}` |" in report
    tags = version_tags(client, better.model_version)
    assert (tags["decision"], tags["previous_champion_version"]) == ("promoted", first.model_version)
    assert version_tags(client, first.model_version)["replaced_by_version"] == better.model_version
    assert version_number(get_champion(client)) == better.model_version


def test_a_retry_after_the_decision_was_recorded_moves_the_alias(
    mlflow_store, weak_trained, trained, monkeypatch
):
    client, artifact_root = mlflow_store
    first = register_training(client, artifact_root, weak_trained, "2024-02-05")
    run_promotion(client, first)
    better = register_training(client, artifact_root, trained, "2024-02-12")
    fail_once(monkeypatch, client, "set_registered_model_alias", lambda *args: True)

    with pytest.raises(RuntimeError, match="worker lost"):
        run_promotion(client, better)
    assert version_tags(client, better.model_version)["decision"] == "promoted"
    assert version_number(get_champion(client)) == first.model_version

    decision, _ = run_promotion(client, better)

    assert decision.promote
    assert version_number(get_champion(client)) == better.model_version
    assert version_tags(client, better.model_version)["previous_champion_version"] == first.model_version
    assert version_tags(client, first.model_version)["replaced_by_version"] == better.model_version


def test_promotions_at_once_move_the_champion_once(mlflow_store, weak_trained):
    """A backfill's promotion steps on an instance without the `promotion` pool: all compared with v1."""
    client, artifact_root = mlflow_store
    champion = get_model_version(client, register_training(client, artifact_root, weak_trained).model_version)
    promote(client, decide_promotion(0.7, None), champion, None)
    challengers = [
        get_model_version(client, register_training(client, artifact_root, weak_trained, key).model_version)
        for key in ("2024-02-12", "2024-02-19", "2024-02-26", "2024-03-04")
    ]
    registry = MlflowRegistry(
        tracking_uri=client.tracking_uri, artifact_root=str(artifact_root), retry_base_delay_seconds=0.01
    )
    start = threading.Barrier(len(challengers))

    def promote_at_once(challenger):
        start.wait()
        return registry.promote(decide_promotion(0.9, 0.7), challenger, champion)

    with ThreadPoolExecutor(len(challengers)) as pool:
        futures = [pool.submit(promote_at_once, challenger) for challenger in challengers]
    outcomes = [future.exception() or future.result() for future in futures]

    promoted = [o for o in outcomes if isinstance(o, Promotion)]
    assert len(promoted) == 1, outcomes
    assert all(isinstance(o, ChampionChangedError) for o in outcomes if o is not promoted[0]), outcomes
    winner = promoted[0].challenger_version
    assert version_number(get_champion(client)) == winner
    assert version_tags(client, winner)["previous_champion_version"] == version_number(champion)
    assert version_tags(client, version_number(champion))["replaced_by_version"] == winner
    for challenger in map(version_number, challengers):
        if challenger != winner:
            assert "decision" not in version_tags(client, challenger)
    with pytest.raises(MlflowException, match="not found"):
        client.get_registered_model(lease_name())  # released


def test_rollback_walks_back_the_promotion_chain(
    mlflow_store, trained, weak_trained, inverted_trained
):
    client, artifact_root = mlflow_store
    v1, v2, v3 = (
        register_training(client, artifact_root, model, key).model_version
        for model, key in [
            (weak_trained, "2024-02-05"),
            (trained, "2024-02-12"),
            (inverted_trained, "2024-02-19"),
        ]
    )
    versions = {v: client.get_model_version(REGISTERED_MODEL_NAME, v) for v in (v1, v2, v3)}
    forced = decide_promotion(0.9, None)  # promotion regardless of AUC: only the chain matters here
    promote(client, forced, versions[v1], None)
    promote(client, forced, versions[v2], versions[v1])
    promote(client, forced, versions[v3], versions[v2])
    assert version_number(get_champion(client)) == v3

    first = rollback(client)
    assert (first.rolled_back_version, first.restored_version) == (v3, v2)
    assert version_number(get_champion(client)) == v2
    assert version_tags(client, v3)["rolled_back_to_version"] == v2
    assert version_tags(client, v2)["restored_from_version"] == v3
    assert f"| Champion now | `v{v2}` |" in first.report

    assert rollback(client).restored_version == v1
    assert version_number(get_champion(client)) == v1
    with pytest.raises(NoPreviousChampionError, match="no recorded previous champion"):
        rollback(client)
    assert version_number(get_champion(client)) == v1


def test_rollback_without_champion_is_a_clear_error(mlflow_store):
    client, _ = mlflow_store
    with pytest.raises(NoPreviousChampionError, match="no champion"):
        rollback(client)
