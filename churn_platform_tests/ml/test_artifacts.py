"""A version's model and holdout are verified before they are deserialized (issue 10, case 6)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
import mlflow.sklearn
import pytest
from sklearn.preprocessing import FunctionTransformer

from churn_platform.constants import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from churn_platform.ml.artifacts import (
    HOLDOUT_ARTIFACT,
    TAG_HOLDOUT_SHA256,
    UntrustedArtifactError,
    file_sha256,
    load_holdout,
    load_model_version,
)
from churn_platform.ml.mlflow_io import fluent_uris
from churn_platform.ml.registration import ensure_experiment
from churn_platform.resources.mlflow_registry import MlflowRegistry
from churn_platform_tests.helpers import register_training


class RunsOnUnpickle:
    """Unpickling this object runs a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def register_crafted_model(client, artifact_root, model, **log_model_args) -> str:
    """What an attacker with registry access can do: log any model as a new version, alias it champion."""
    experiment_id = ensure_experiment(client, artifact_root)
    run_id = client.create_run(experiment_id).info.run_id
    logged = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    with fluent_uris(client):
        info = mlflow.sklearn.log_model(
            model, name="model", model_id=logged.model_id, run_id=run_id,
            pip_requirements=["scikit-learn"], **log_model_args,
        )
        client.create_registered_model(REGISTERED_MODEL_NAME)
        version = client.create_model_version(
            REGISTERED_MODEL_NAME, source=info.model_uri, run_id=run_id, model_id=logged.model_id
        ).version
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    return str(version)


def registry_of(client, artifact_root) -> MlflowRegistry:
    return MlflowRegistry(tracking_uri=client.tracking_uri, artifact_root=str(artifact_root))


def local_artifact(client, version: str, name: str) -> Path:
    location = client.get_model_version_download_uri(REGISTERED_MODEL_NAME, version)
    return Path(location.removeprefix("file://")) / name


@pytest.mark.parametrize("serialization_format", ["cloudpickle", "pickle"])
def test_a_pickled_champion_is_refused_and_never_unpickled(mlflow_store, tmp_path, serialization_format):
    client, artifact_root = mlflow_store
    marker = tmp_path / "unpickled"
    version = register_crafted_model(
        client, artifact_root, RunsOnUnpickle(marker), serialization_format=serialization_format
    )

    with pytest.raises(UntrustedArtifactError, match=rf"v{version} is serialized as '{serialization_format}'"):
        load_model_version(client, version)
    champion = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    with pytest.raises(dg.Failure, match="refused, not loaded") as refused:
        registry_of(client, artifact_root).load_model(champion)  # what churn_scores calls
    assert refused.value.allow_retries is False
    assert not marker.exists()

    # The artifact really is hostile: unpickling it on purpose runs the command.
    model_file = local_artifact(client, version, "model.pkl")
    subprocess.run(
        [sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", str(model_file)],
        check=True,
    )
    assert marker.exists()


def test_trusted_types_come_from_the_platform_not_from_the_artifact(mlflow_store, monkeypatch):
    """A skops file that whitelists os.system in its own MLmodel: MLflow's loader trusts it, ours refuses."""
    client, artifact_root = mlflow_store
    hostile = FunctionTransformer(func=os.system)  # predict would run the rows as shell commands
    version = register_crafted_model(
        client, artifact_root, hostile, serialization_format="skops", skops_trusted_types=["posix.system"]
    )

    with pytest.raises(UntrustedArtifactError, match=rf"v{version} holds types we do not trust.*posix.system"):
        load_model_version(client, version)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    with fluent_uris(client):
        assert mlflow.sklearn.load_model(f"models:/{REGISTERED_MODEL_NAME}/{version}").func is os.system


def test_a_platform_model_loads_while_mlflow_refuses_deserialization(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # set for every ml/ test
    logged = register_training(client, artifact_root, weak_trained)
    loaded = load_model_version(client, logged.model_version)
    assert type(loaded) is type(weak_trained.model)


def test_a_tampered_holdout_is_refused(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    logged = register_training(client, artifact_root, weak_trained)
    run = client.get_run(logged.run_id)
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / HOLDOUT_ARTIFACT
    assert run.data.tags[TAG_HOLDOUT_SHA256] == file_sha256(stored)
    assert len(load_holdout(client, logged.run_id)) == len(weak_trained.holdout)

    flipped = weak_trained.holdout.assign(churned=1 - weak_trained.holdout["churned"])
    flipped.to_parquet(stored, index=False)  # a valid parquet file with the wrong labels

    with pytest.raises(UntrustedArtifactError, match=rf"holdout of run {logged.run_id} has SHA-256"):
        load_holdout(client, logged.run_id)
    with pytest.raises(dg.Failure, match="the artifact changed since") as refused:
        registry_of(client, artifact_root).holdout(logged.run_id)
    assert refused.value.allow_retries is False


def test_a_holdout_without_a_recorded_checksum_is_refused(mlflow_store, weak_trained):
    client, artifact_root = mlflow_store
    logged = register_training(client, artifact_root, weak_trained)
    client.delete_tag(logged.run_id, TAG_HOLDOUT_SHA256)
    with pytest.raises(UntrustedArtifactError, match="cannot be verified"):
        load_holdout(client, logged.run_id)
