"""MLflow on a temporary sqlite store with artifacts under tmp_path; small synthetic data."""

import dataclasses
import shutil

import pytest

from churn_platform.constants import FEATURE_COLUMNS, LABEL_COLUMN
from churn_platform.dev.synthetic_training import synthetic_training_frame
from churn_platform.ml.mlflow_io import connect
from churn_platform.ml.training import evaluate, train
from churn_platform_tests.helpers import (
    FAST_TRAINING_PARAMS,
    WEAK_TRAINING_PARAMS,
    migrate_mlflow_store,
)


@pytest.fixture(autouse=True)
def offline_mlflow(monkeypatch):
    """No MLflow or usage telemetry leaves the machine; no download progress bars in the log.

    MLflow's own model deserialization is refused, as in the stack: our loader never needs it.
    """
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory):
    """An empty MLflow sqlite store, migrated once: migrations take ~2 s per new file."""
    return migrate_mlflow_store(tmp_path_factory.mktemp("mlflow-template") / "mlflow.db")


@pytest.fixture
def mlflow_store(tmp_path, migrated_store):
    """(client, artifact_root) on a fresh copy of the migrated store."""
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_store, db)
    return connect(f"sqlite:///{db}"), tmp_path / "artifacts"


@pytest.fixture(scope="session")
def training_frame():
    """Above the 10k-row gate."""
    return synthetic_training_frame(n_rows=12_000, seed=0)


@pytest.fixture(scope="session")
def trained(training_frame):
    return train(training_frame, FAST_TRAINING_PARAMS)


@pytest.fixture(scope="session")
def weak_trained(training_frame):
    return train(training_frame, WEAK_TRAINING_PARAMS)


@pytest.fixture(scope="session")
def inverted_trained(training_frame, trained):
    """Trained on inverted labels, measured on the real holdout: a model certainly worse.

    (Permuted labels are not enough: a small model fitted to noise can still rank the real
    holdout at AUC 0.6-0.7 by chance, when its few splits land on informative features.)
    """
    inverted = training_frame.assign(churned=1 - training_frame["churned"])
    model = train(inverted, FAST_TRAINING_PARAMS).model
    holdout = trained.holdout
    metrics = evaluate(model, holdout[list(FEATURE_COLUMNS)], holdout[LABEL_COLUMN])
    return dataclasses.replace(trained, model=model, metrics=metrics)
