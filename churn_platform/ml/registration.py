"""Registering a training (docs/contract.md §4): one MLflow run, one new model version.

A run ends FINISHED only once its version exists; on any failure it ends FAILED and no
version from it is left registered (`log_and_register`, `abandon`).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from churn_platform.constants import FEATURE_COLUMNS, MLFLOW_EXPERIMENT, REGISTERED_MODEL_NAME
from churn_platform.redaction import redact_url
from churn_platform.ml.artifacts import HOLDOUT_ARTIFACT, HOLDOUT_ARTIFACT_DIR, TAG_HOLDOUT_SHA256
from churn_platform.ml.evaluation_plots import start_plots
from churn_platform.ml.holdout_evaluation import HoldoutEvaluation
from churn_platform.ml.model_card import MODEL_CARD_ARTIFACT
from churn_platform.ml.mlflow_io import (
    DEFAULT_RETRY,
    MlflowRetry,
    call_with_retry,
    fluent_uris,
    version_number,
)
from churn_platform.ml.training import (
    CATEGORICAL_COLUMN,
    NUMERIC_COLUMNS,
    SKOPS_TRUSTED_TYPES,
    TrainedModel,
)

MODEL_ARTIFACT_NAME = "model"
EVALUATION_ARTIFACT_DIR = "evaluation"  # evaluation.json and its PNG plots

# Identity tags of a training, on its run and its model version.
TAG_PARTITION_KEY = "partition_key"
TAG_DAGSTER_RUN_ID = "dagster_run_id"
TAG_DATA_WINDOW = "data_window"


@dataclass(frozen=True)
class LoggedVersion:
    """What a training run produced: where to find it in MLflow and how good it is."""

    run_id: str
    experiment_id: str
    model_version: str
    model_uri: str
    run_ui_path: str
    run_url: str | None
    metrics: dict[str, float]
    plots: dict[str, bytes]  # PNG bytes by file name, as logged under evaluation/


def _artifact_location(artifact_root: str | Path, experiment_name: str) -> str:
    """A URI under artifact_root; bare paths become absolute file URIs, never ./mlruns."""
    root = str(artifact_root)
    if "://" in root or root.startswith("mlflow-artifacts:"):
        return f"{root.rstrip('/')}/{experiment_name}"
    return (Path(root).expanduser().resolve() / experiment_name).as_uri()


def ensure_experiment(
    client: MlflowClient,
    artifact_root: str | Path,
    experiment_name: str = MLFLOW_EXPERIMENT,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> str:
    """The experiment's id, creating it with its artifacts under artifact_root.

    An existing experiment that stores artifacts elsewhere is a configuration
    error (e.g. CHURN_DATA_DIR moved), so it raises rather than scattering artifacts.
    """
    location = _artifact_location(artifact_root, experiment_name)
    experiment = call_with_retry(
        client, "look up the experiment", client.get_experiment_by_name, experiment_name, retry=retry
    )
    if experiment is None:
        try:
            return call_with_retry(
                client,
                "create the experiment",
                client.create_experiment,
                experiment_name,
                artifact_location=location,
                retry=retry,
            )
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(experiment_name)  # created concurrently
    if experiment.lifecycle_stage != "active":
        raise RuntimeError(
            f"MLflow experiment {experiment_name!r} is deleted; restore it or delete it permanently"
        )
    if experiment.artifact_location != location:
        raise RuntimeError(
            f"MLflow experiment {experiment_name!r} stores artifacts at "
            f"{experiment.artifact_location}, not under the configured root {location}"
        )
    return experiment.experiment_id


def _input_example(features: pd.DataFrame) -> pd.DataFrame:
    """Rows as scoring receives them: numbers as double (INT columns may hold nulls), tier as str."""
    dtypes = {**{column: "float64" for column in NUMERIC_COLUMNS}, CATEGORICAL_COLUMN: "object"}
    return features.loc[:, list(FEATURE_COLUMNS)].head(5).astype(dtypes)


def _ensure_registered_model(client: MlflowClient, model_name: str, retry: MlflowRetry) -> None:
    try:
        call_with_retry(
            client, "create the registered model", client.create_registered_model, model_name, retry=retry
        )
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _versions_of_run(client: MlflowClient, model_name: str, run_id: str) -> list[ModelVersion]:
    return list(client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"))


def _register_version(
    client: MlflowClient,
    model_name: str,
    model_uri: str,
    model_id: str,
    run_id: str,
    tags: Mapping[str, str],
) -> ModelVersion:
    """One version per run: a retry after an ambiguous failure finds the earlier one."""
    existing = _versions_of_run(client, model_name, run_id)
    if existing:
        return existing[0]
    return client.create_model_version(
        model_name, source=model_uri, run_id=run_id, tags=dict(tags), model_id=model_id
    )


def abandon(
    client: MlflowClient,
    run_id: str,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> None:
    """Delete any version registered from the run and mark the run FAILED.

    Best effort on the way out of a failure: the original error is what the
    caller must see, so cleanup errors are attached as notes by the caller.
    """
    versions = call_with_retry(
        client, "find versions of the run", _versions_of_run, client, model_name, run_id, retry=retry
    )
    for version in versions:
        call_with_retry(
            client,
            f"delete model version {version.version}",
            client.delete_model_version,
            model_name,
            version.version,
            retry=retry,
        )
    call_with_retry(client, "mark the run FAILED", client.set_terminated, run_id, "FAILED", retry=retry)


def log_and_register(
    client: MlflowClient,
    trained: TrainedModel,
    *,
    artifact_root: str | Path,
    partition_key: str,
    dagster_run_id: str,
    data_window: str,
    evaluation: HoldoutEvaluation,
    model_card: Callable[[str], str],
    experiment_name: str = MLFLOW_EXPERIMENT,
    model_name: str = REGISTERED_MODEL_NAME,
    ui_url: str | None = None,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> LoggedVersion:
    """Log one training as one MLflow run and register it as a new model version.

    The run ends FINISHED only once the version exists; on any failure the run
    ends FAILED and no version from it is left registered. The holdout goes
    along as a parquet artifact and its SHA-256 as a run tag, so promotion
    scores champion and challenger on the same, verified rows. The holdout
    evaluation goes along as metrics and as `evaluation/` (JSON and PNG plots,
    drawn by a side process while the model is logged); `model_card(version)`
    becomes the version's description and `model_card.md`. ui_url (the MLflow
    UI) defaults to an http(s) tracking URI.
    """
    experiment_id = ensure_experiment(client, artifact_root, experiment_name, retry=retry)
    identity = {
        TAG_PARTITION_KEY: partition_key,
        TAG_DAGSTER_RUN_ID: dagster_run_id,
        TAG_DATA_WINDOW: data_window,
    }
    params = {**trained.params.as_dict(), "estimator": type(trained.model[-1]).__name__}
    metrics = {**trained.metrics, "fit_seconds": trained.fit_seconds, **evaluation.metrics(),
               "evaluation_seconds": evaluation.seconds}
    holdout_bytes = trained.holdout.to_parquet(index=False)
    run = call_with_retry(
        client,
        "create the run",
        client.create_run,
        experiment_id,
        run_name=f"churn_{partition_key}",
        # Promotion refuses a holdout whose bytes no longer match this checksum.
        tags={**identity, TAG_HOLDOUT_SHA256: hashlib.sha256(holdout_bytes).hexdigest()},
        retry=retry,
    )
    run_id = run.info.run_id
    scratch = tempfile.TemporaryDirectory()
    plots = None
    try:
        evaluation_dir = Path(scratch.name) / EVALUATION_ARTIFACT_DIR
        plots = start_plots(evaluation.to_dict(), evaluation_dir)
        now_ms = int(time.time() * 1000)
        call_with_retry(
            client,
            "log params and metrics",
            client.log_batch,
            run_id,
            metrics=[Metric(key, float(value), now_ms, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in params.items()],
            retry=retry,
        )
        # Created up front so the model lands in this run's experiment: without an
        # active fluent run, log_model would file it under the default experiment.
        logged_model = call_with_retry(
            client,
            "create the logged model",
            client.create_logged_model,
            experiment_id,
            name=MODEL_ARTIFACT_NAME,
            source_run_id=run_id,
            params={key: str(value) for key, value in params.items()},
            tags=identity,
            retry=retry,
        )
        example = _input_example(trained.holdout)
        with fluent_uris(client):
            model_info = call_with_retry(
                client,
                "log the model",
                mlflow.sklearn.log_model,
                trained.model,
                name=MODEL_ARTIFACT_NAME,
                model_id=logged_model.model_id,
                run_id=run_id,
                signature=infer_signature(example, trained.model.predict_proba(example)),
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
                # Explicit requirements skip a slow subprocess that infers them.
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
                retry=retry,
            )
        holdout_path = Path(scratch.name) / Path(HOLDOUT_ARTIFACT).name
        holdout_path.write_bytes(holdout_bytes)
        call_with_retry(
            client,
            "log the holdout",
            client.log_artifact,
            run_id,
            str(holdout_path),
            HOLDOUT_ARTIFACT_DIR,
            retry=retry,
        )
        plot_bytes = {path.name: path.read_bytes() for path in plots.wait()}
        call_with_retry(
            client, "log the evaluation", client.log_artifacts, run_id, str(evaluation_dir),
            EVALUATION_ARTIFACT_DIR, retry=retry,
        )
        _ensure_registered_model(client, model_name, retry)
        # The sqlite registry resolves a models:/<model_id> source through the
        # global tracking URI (an MLflow TODO), hence the scope here too.
        with fluent_uris(client):
            version = call_with_retry(
                client,
                "register the model version",
                _register_version,
                client,
                model_name,
                model_info.model_uri,
                logged_model.model_id,
                run_id,
                {**identity, "roc_auc": f"{trained.metrics['roc_auc']:.6f}"},
                retry=retry,
            )
        card = model_card(version_number(version))
        call_with_retry(client, "log the model card", client.log_text, run_id, card, MODEL_CARD_ARTIFACT, retry=retry)
        call_with_retry(
            client, "describe the model version", client.update_model_version, model_name,
            version_number(version), card, retry=retry,
        )
        call_with_retry(
            client, "finish the run", client.set_terminated, run_id, "FINISHED", retry=retry
        )
    except BaseException as err:
        try:
            abandon(client, run_id, model_name, retry=retry)
        except Exception as cleanup_error:
            err.add_note(f"cleanup of MLflow run {run_id} also failed: {cleanup_error}")
        raise
    finally:
        if plots is not None:
            plots.kill()
        scratch.cleanup()
    base_url = ui_url or (redact_url(client.tracking_uri) if client.tracking_uri.startswith("http") else None)
    ui_path = f"#/experiments/{experiment_id}/runs/{run_id}"
    return LoggedVersion(
        run_id=run_id,
        experiment_id=experiment_id,
        model_version=version_number(version),
        model_uri=f"models:/{model_name}/{version_number(version)}",
        run_ui_path=ui_path,
        run_url=f"{base_url.rstrip('/')}/{ui_path}" if base_url else None,
        metrics=metrics,
        plots=plot_bytes,
    )
