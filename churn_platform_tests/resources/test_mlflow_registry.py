"""MlflowRegistry's domain methods on a real sqlite MLflow store, with retries inside."""

import shutil
import socket

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from churn_platform.constants import FEATURE_COLUMNS
from churn_platform.dev.synthetic_training import synthetic_training_frame
from churn_platform.ml.mlflow_io import MlflowUnavailableError, version_number
from churn_platform.ml.promotion import NoPreviousChampionError, decide_promotion, holdout_aucs
from churn_platform.ml.training import train
from churn_platform.resources.mlflow_registry import MlflowRegistry
from churn_platform_tests.helpers import (
    FAST_TRAINING_PARAMS,
    WEAK_TRAINING_PARAMS,
    holdout_evaluation,
    migrate_mlflow_store,
)


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory):
    return migrate_mlflow_store(tmp_path_factory.mktemp("mlflow-template") / "mlflow.db")


@pytest.fixture(scope="module")
def trainings():
    """(weak, strong): two trainings on the same rows, the second clearly better."""
    frame = synthetic_training_frame(n_rows=12_000, seed=0)
    return train(frame, WEAK_TRAINING_PARAMS), train(frame, FAST_TRAINING_PARAMS)


@pytest.fixture
def registry(tmp_path, migrated_store) -> MlflowRegistry:
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_store, db)
    return MlflowRegistry(
        tracking_uri=f"sqlite:///{db}",
        artifact_root=str(tmp_path / "artifacts"),
        retry_base_delay_seconds=0.001,
    )


def register(registry: MlflowRegistry, trained, partition_key: str):
    return registry.register_training(
        trained,
        partition_key=partition_key,
        dagster_run_id=f"dagster-run-{partition_key}",
        data_window=f"features and labels of {partition_key}",
        evaluation=holdout_evaluation(trained),
        model_card=lambda version: f"# churn_prediction v{version}\n",
    )


def decide_and_promote(registry: MlflowRegistry, logged):
    """What promotion_decision does, through the resource only."""
    challenger = registry.model_version(logged.model_version)
    champion = registry.champion()
    challenger_auc, champion_auc = holdout_aucs(
        registry.score_holdout(challenger, champion, registry.holdout(logged.run_id))
    )
    promotion = registry.promote(decide_promotion(challenger_auc, champion_auc), challenger, champion)
    return promotion.decision, promotion.report


def test_first_training_becomes_the_champion_and_loads_back(registry, trainings):
    weak, _ = trainings
    assert registry.champion() is None

    logged = register(registry, weak, "2024-02-05")
    assert logged.metrics["roc_auc"] == pytest.approx(weak.metrics["roc_auc"])
    holdout = registry.holdout(logged.run_id)
    assert len(holdout) == len(weak.holdout)
    challenger_auc, champion_auc = holdout_aucs(
        registry.score_holdout(registry.model_version(logged.model_version), None, holdout)
    )
    assert champion_auc is None and challenger_auc == pytest.approx(weak.metrics["roc_auc"])

    decision, report = decide_and_promote(registry, logged)
    assert decision.promote and "**PROMOTED**" in report
    champion = registry.champion()
    assert version_number(champion) == logged.model_version
    frame = weak.holdout[list(FEATURE_COLUMNS)].head(50).astype({"plan_tier": "object"})
    np.testing.assert_allclose(registry.load_model(champion).predict_proba(frame), weak.model.predict_proba(frame))


def test_better_challenger_is_promoted_then_rolled_back(registry, trainings):
    weak, strong = trainings
    first = register(registry, weak, "2024-02-05")
    decide_and_promote(registry, first)
    second = register(registry, strong, "2024-02-12")

    challenger_auc, champion_auc = holdout_aucs(registry.score_holdout(
        registry.model_version(second.model_version), registry.champion(), registry.holdout(second.run_id)
    ))
    assert challenger_auc - champion_auc >= 0.005  # both scored on the challenger's holdout
    decision, _ = decide_and_promote(registry, second)
    assert decision.promote
    assert version_number(registry.champion()) == second.model_version

    undone = registry.rollback()
    assert (undone.rolled_back_version, undone.restored_version) == (second.model_version, first.model_version)
    assert version_number(registry.champion()) == first.model_version
    assert registry.model_version(second.model_version).tags["rolled_back_to_version"] == first.model_version
    with pytest.raises(NoPreviousChampionError):
        registry.rollback()


def test_a_transient_failure_is_retried(registry, monkeypatch):
    read_model = MlflowClient.get_registered_model
    calls = []

    def locked_twice(self, name):
        calls.append(name)
        if len(calls) < 3:
            raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        return read_model(self, name)

    monkeypatch.setattr(MlflowClient, "get_registered_model", locked_twice)
    assert registry.champion() is None  # the third attempt finds no registered model
    assert len(calls) == 3


def test_an_unreachable_server_fails_after_the_configured_attempts(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own HTTP retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    registry = MlflowRegistry(
        tracking_uri=uri, artifact_root=str(tmp_path), retry_attempts=2, retry_base_delay_seconds=0.01
    )
    with pytest.raises(MlflowUnavailableError, match=rf"{uri}.*after 2 attempts"):
        registry.champion()
