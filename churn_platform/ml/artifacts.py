"""Reading a version's model and holdout back without trusting the artifact store (docs/contract.md §4).

Whoever can write the artifact store or reach the tracking server can register any file and
move `champion`, and unpickling a file runs its code in our run worker. So a model loads only
if its MLmodel says skops, and then only with our own trusted-types list: never through
`mlflow.sklearn.load_model`, which unpickles whatever format the MLmodel names and, for skops,
trusts the types listed by the artifact itself. A holdout loads only if its bytes match the
SHA-256 recorded on its run when it was logged.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd
import skops.io
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from skops.io.exceptions import UntrustedTypesFoundException
from sklearn.pipeline import Pipeline

from churn_platform.constants import REGISTERED_MODEL_NAME
from churn_platform.ml.mlflow_io import DEFAULT_RETRY, MlflowRetry, call_with_retry, version_number
from churn_platform.ml.training import SKOPS_TRUSTED_TYPES

HOLDOUT_ARTIFACT_DIR = "holdout"
HOLDOUT_ARTIFACT = f"{HOLDOUT_ARTIFACT_DIR}/holdout.parquet"
TAG_HOLDOUT_SHA256 = "holdout_sha256"  # run tag, set when the run is created
SKOPS_FORMAT = "skops"


class UntrustedArtifactError(RuntimeError):
    """An artifact failed verification: refused before it was deserialized; a retry cannot help."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_file_name(mlmodel_path: str, label: str) -> str:
    """The skops file named by the sklearn flavor of an MLmodel; refuses any other format."""
    with open(mlmodel_path) as f:
        flavor = (yaml.safe_load(f) or {}).get("flavors", {}).get("sklearn")
    if not flavor:
        raise UntrustedArtifactError(f"{label} has no sklearn flavor in its MLmodel: refused, not loaded")
    # MLflow reads a missing serialization_format as pickle.
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != SKOPS_FORMAT:
        raise UntrustedArtifactError(
            f"{label} is serialized as {fmt!r}, not {SKOPS_FORMAT!r}: refused, not loaded "
            "(unpickling runs code from the artifact store)"
        )
    name = str(flavor.get("pickled_model", ""))
    if name in ("", ".", "..") or PurePosixPath(name).name != name or "\\" in name:
        raise UntrustedArtifactError(f"{label} names model file {name!r} outside its directory: refused")
    return name


def load_model_version(
    client: MlflowClient,
    version: ModelVersion | str,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> Pipeline:
    """The sklearn pipeline of a registered version, if it is a skops file of trusted types.

    Downloads the MLmodel first and the model file only once the format is checked; the
    version's own `skops_trusted_types` are ignored in favour of SKOPS_TRUSTED_TYPES.
    """
    number = version_number(version)
    label = f"{model_name} v{number}"
    location = call_with_retry(
        client, f"locate model version {number}", client.get_model_version_download_uri,
        model_name, number, retry=retry,
    )
    repository = get_artifact_repository(location, tracking_uri=client.tracking_uri)
    with tempfile.TemporaryDirectory() as scratch:
        mlmodel = call_with_retry(
            client, f"download the MLmodel of {label}", repository.download_artifacts,
            "MLmodel", scratch, retry=retry,
        )
        model_file = call_with_retry(
            client, f"download the model file of {label}", repository.download_artifacts,
            _model_file_name(mlmodel, label), scratch, retry=retry,
        )
        try:
            return skops.io.load(model_file, trusted=list(SKOPS_TRUSTED_TYPES))
        except UntrustedTypesFoundException as err:
            raise UntrustedArtifactError(f"{label} holds types we do not trust: {err}") from err


def load_holdout(client: MlflowClient, run_id: str, *, retry: MlflowRetry = DEFAULT_RETRY) -> pd.DataFrame:
    """The holdout rows a training run was measured on, if they are the bytes it logged."""
    run = call_with_retry(client, "read the training run", client.get_run, run_id, retry=retry)
    recorded = run.data.tags.get(TAG_HOLDOUT_SHA256)
    if not recorded:
        raise UntrustedArtifactError(
            f"run {run_id} has no {TAG_HOLDOUT_SHA256} tag: its holdout cannot be verified, refused"
        )
    with tempfile.TemporaryDirectory() as scratch:
        local = call_with_retry(
            client, "download the holdout", client.download_artifacts,
            run_id, HOLDOUT_ARTIFACT, scratch, retry=retry,
        )
        actual = file_sha256(local)
        if actual != recorded:
            raise UntrustedArtifactError(
                f"holdout of run {run_id} has SHA-256 {actual}, not the {recorded} recorded when it "
                "was logged: the artifact changed since, refused"
            )
        return pd.read_parquet(local)
