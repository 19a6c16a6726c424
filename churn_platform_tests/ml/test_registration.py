import dataclasses
import json
import os
import socket
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_STATE
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from churn_platform.constants import FEATURE_COLUMNS, REGISTERED_MODEL_NAME
from churn_platform.ml.mlflow_io import MlflowUnavailableError, connect
from churn_platform.ml.artifacts import load_holdout, load_model_version
from churn_platform.ml.promotion import get_champion
from churn_platform.ml.evaluation_plots import EVALUATION_JSON, PLOT_FILES
from churn_platform.ml.model_card import MODEL_CARD_ARTIFACT
from churn_platform_tests.helpers import fast_mlflow_retry, holdout_evaluation, register_training


def test_logged_model_round_trips_and_leaves_no_global_state(
    mlflow_store, trained, tmp_path, monkeypatch
):
    client, artifact_root = mlflow_store
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://not-used.invalid")
    uri_before = mlflow.get_tracking_uri()

    logged = register_training(client, artifact_root, trained)

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

    evaluation = holdout_evaluation(trained)
    assert run.data.metrics["top_decile_lift"] == pytest.approx(evaluation.lift.top_decile_lift)
    assert run.data.metrics["brier_score"] == pytest.approx(evaluation.calibration.brier_score)
    assert run.data.metrics["precision_at_10pct"] == pytest.approx(evaluation.top[1].precision)
    logged_files = {a.path for a in client.list_artifacts(logged.run_id, "evaluation")}
    assert logged_files == {f"evaluation/{name}" for name in (EVALUATION_JSON, *PLOT_FILES)}
    for name in PLOT_FILES:
        assert logged.plots[name].startswith(b"\x89PNG"), name
    logged_json = json.loads(Path(client.download_artifacts(logged.run_id, f"evaluation/{EVALUATION_JSON}")).read_text())
    assert logged_json["lift"]["top_decile_lift"] == pytest.approx(evaluation.lift.top_decile_lift)
    version = client.get_model_version(REGISTERED_MODEL_NAME, logged.model_version)
    card = Path(client.download_artifacts(logged.run_id, MODEL_CARD_ARTIFACT)).read_text()
    assert card.startswith(f"# churn_prediction v{logged.model_version}") and version.description == card

    loaded = load_model_version(client, logged.model_version)
    frame = trained.holdout[list(FEATURE_COLUMNS)].head(100).astype({"plan_tier": "object"})
    np.testing.assert_allclose(loaded.predict_proba(frame), trained.model.predict_proba(frame))
    pd.testing.assert_frame_equal(
        load_holdout(client, logged.run_id).reset_index(drop=True),
        trained.holdout.reset_index(drop=True),
    )


def test_failure_inside_the_run_fails_it_and_registers_nothing(mlflow_store, trained):
    client, artifact_root = mlflow_store
    unfitted = dataclasses.replace(trained, model=clone(trained.model))
    with pytest.raises(NotFittedError):
        register_training(client, artifact_root, unfitted, evaluation=holdout_evaluation(trained))
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
        register_training(client, artifact_root, trained)
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
        register_training(client, tmp_path / "artifacts", trained)
    with pytest.raises(MlflowUnavailableError, match=uri):
        get_champion(client, retry=fast_mlflow_retry())
    assert time.monotonic() - started < 10
