import dataclasses
import os
import socket
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_STATE
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from churn_platform.constants import CHAMPION_ALIAS, FEATURE_COLUMNS, REGISTERED_MODEL_NAME
from churn_platform.ml.registry import (
    MlflowUnavailableError,
    NoPreviousChampionError,
    RetryPolicy,
    compare_on_holdout,
    connect,
    decide_promotion,
    get_champion,
    load_holdout,
    load_model_version,
    log_and_register,
    promote,
    rollback,
    version_number,
)

FAST_RETRY = RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.02)


def register(client, artifact_root, trained, partition_key="2024-02-05"):
    return log_and_register(
        client,
        trained,
        artifact_root=artifact_root,
        partition_key=partition_key,
        dagster_run_id=f"dagster-run-{partition_key}",
        data_window="as_of 2024-01-07, labels (2024-01-07, 2024-02-04]",
        retry=FAST_RETRY,
    )


def run_promotion(client, logged):
    """The promotion step as the Dagster asset runs it."""
    challenger = client.get_model_version(REGISTERED_MODEL_NAME, logged.model_version)
    champion = get_champion(client)
    holdout = load_holdout(client, logged.run_id)
    challenger_auc, champion_auc = compare_on_holdout(client, challenger, champion, holdout)
    decision = decide_promotion(challenger_auc, champion_auc)
    report = promote(client, decision, challenger, champion)
    return decision, report


def version_tags(client, version):
    return client.get_model_version(REGISTERED_MODEL_NAME, version).tags


def test_logged_model_round_trips_and_leaves_no_global_state(
    mlflow_store, trained, tmp_path, monkeypatch
):
    client, artifact_root = mlflow_store
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://not-used.invalid")
    uri_before = mlflow.get_tracking_uri()

    logged = register(client, artifact_root, trained)

    assert mlflow.get_tracking_uri() == uri_before
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://not-used.invalid"
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert list(workdir.iterdir()) == []  # nothing in ./mlruns or ./mlflow.db
    experiment = client.get_experiment(logged.experiment_id)
    assert experiment.artifact_location == (artifact_root / "churn_weekly_training").as_uri()
    assert list((artifact_root / "churn_weekly_training").iterdir())

    run = client.get_run(logged.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["partition_key"] == "2024-02-05"
    assert run.data.tags["dagster_run_id"] == "dagster-run-2024-02-05"
    assert run.data.metrics["roc_auc"] == pytest.approx(trained.metrics["roc_auc"])
    assert run.data.params["max_iter"] == "30"
    assert logged.model_uri == f"models:/{REGISTERED_MODEL_NAME}/1"
    assert logged.run_url is None and logged.run_ui_path.endswith(logged.run_id)

    loaded = load_model_version(client, logged.model_version)
    frame = trained.holdout[list(FEATURE_COLUMNS)].head(100).astype({"plan_tier": "object"})
    np.testing.assert_allclose(loaded.predict_proba(frame), trained.model.predict_proba(frame))
    pd.testing.assert_frame_equal(
        load_holdout(client, logged.run_id).reset_index(drop=True),
        trained.holdout.reset_index(drop=True),
    )


def test_promotion_flow(mlflow_store, trained, weak_trained, inverted_trained):
    client, artifact_root = mlflow_store
    assert get_champion(client) is None  # no registered model yet

    first = register(client, artifact_root, weak_trained, "2024-02-05")
    decision, report = run_promotion(client, first)
    assert decision.promote and decision.champion_auc is None
    assert version_number(get_champion(client)) == first.model_version
    assert "**PROMOTED**" in report and "| Champion before | `none` |" in report
    assert version_tags(client, first.model_version)["previous_champion_version"] == "none"

    worse = register(client, artifact_root, inverted_trained, "2024-02-12")
    decision, report = run_promotion(client, worse)
    assert not decision.promote
    assert version_number(get_champion(client)) == first.model_version
    assert "**KEPT CHAMPION**" in report
    assert version_tags(client, worse.model_version)["decision"] == "rejected"

    better = register(client, artifact_root, trained, "2024-02-19")
    decision, report = run_promotion(client, better)
    assert decision.promote and decision.delta >= 0.005
    assert version_number(get_champion(client)) == better.model_version
    tags = version_tags(client, better.model_version)
    assert tags["decision"] == "promoted"
    assert tags["previous_champion_version"] == first.model_version
    assert float(tags["challenger_auc"]) == pytest.approx(decision.challenger_auc, abs=1e-6)
    assert float(tags["champion_auc"]) == pytest.approx(decision.champion_auc, abs=1e-6)
    assert version_tags(client, first.model_version)["replaced_by_version"] == better.model_version
    assert "report.md" in {
        os.path.basename(a.path) for a in client.list_artifacts(better.run_id, "promotion")
    }
    assert client.get_model_version(REGISTERED_MODEL_NAME, better.model_version).aliases == [
        CHAMPION_ALIAS
    ]


def test_promote_refuses_when_the_champion_moved_since_the_comparison(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    first = register(client, artifact_root, weak_trained, "2024-02-05")
    second = register(client, artifact_root, weak_trained, "2024-02-12")
    challenger = client.get_model_version(REGISTERED_MODEL_NAME, second.model_version)
    # Compared while there was no champion; then someone else promoted the first version.
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, first.model_version)
    with pytest.raises(RuntimeError, match="rerun the comparison"):
        promote(client, decide_promotion(0.9, None), challenger, previous_champion=None)
    assert version_number(get_champion(client)) == first.model_version


def test_retried_promotion_of_the_champion_changes_nothing(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    logged = register(client, artifact_root, weak_trained)
    run_promotion(client, logged)
    tags_before = version_tags(client, logged.model_version)

    decision, report = run_promotion(client, logged)  # compared with itself: delta 0

    assert "already is the champion" in report
    assert version_tags(client, logged.model_version) == tags_before
    assert version_number(get_champion(client)) == logged.model_version


def test_rollback_walks_back_the_promotion_chain(
    mlflow_store, trained, weak_trained, inverted_trained
):
    client, artifact_root = mlflow_store
    v1, v2, v3 = (
        register(client, artifact_root, model, key).model_version
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


def test_failure_inside_the_run_fails_it_and_registers_nothing(mlflow_store, trained):
    client, artifact_root = mlflow_store
    unfitted = dataclasses.replace(trained, model=clone(trained.model))
    with pytest.raises(NotFittedError):
        register(client, artifact_root, unfitted)
    assert_failed_run_without_versions(client)


def test_failure_after_registering_deletes_the_version(mlflow_store, trained, monkeypatch):
    client, artifact_root = mlflow_store
    set_terminated = client.set_terminated

    def refuse_to_finish(run_id, status=None, end_time=None):
        if status == "FINISHED":
            raise MlflowException("refused", error_code=INVALID_STATE)
        return set_terminated(run_id, status, end_time)

    monkeypatch.setattr(client, "set_terminated", refuse_to_finish)
    with pytest.raises(MlflowException, match="refused"):
        register(client, artifact_root, trained)
    assert_failed_run_without_versions(client)


def assert_failed_run_without_versions(client):
    experiment = client.get_experiment_by_name("churn_weekly_training")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert list(client.search_model_versions(f"name='{REGISTERED_MODEL_NAME}'")) == []


def test_unreachable_tracking_server_fails_fast_and_clearly(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own HTTP retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    client = connect(uri)

    started = time.monotonic()
    with pytest.raises(MlflowUnavailableError, match=rf"{uri}.*after 3 attempts"):
        register(client, tmp_path / "artifacts", trained)
    with pytest.raises(MlflowUnavailableError, match=uri):
        get_champion(client, retry=FAST_RETRY)
    assert time.monotonic() - started < 10
