"""MLflow side of the churn model (DESIGN.md §4): log, register, compare, promote, roll back.

Every function takes an explicit `MlflowClient` (build it with `connect`) and
leaves MLflow's process-wide state as it found it. The champion is the version
behind the alias `champion`; registry stages are deprecated and never used.

Decision history lives in model version tags:

- every decision is recorded on its challenger (`decision`, both AUCs, `delta`,
  `reason`, `decided_at`, `previous_champion_version`);
- a promotion also marks the replaced champion (`replaced_by_version`);
- `rollback` moves the alias back to the current champion's
  `previous_champion_version` and marks both versions. The restored version
  keeps its own `previous_champion_version`, so each further rollback undoes
  one more promotion, walking back along the promotion chain until a champion
  that had no predecessor; a rolled-back version is never restored by rollback.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking._model_registry import utils as registry_globals
from mlflow.tracking._tracking_service import utils as tracking_globals
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout

from churn_platform.constants import (
    CHAMPION_ALIAS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    MLFLOW_EXPERIMENT,
    REGISTERED_MODEL_NAME,
)
from churn_platform.ml.training import (
    CATEGORICAL_COLUMN,
    NUMERIC_COLUMNS,
    SKOPS_TRUSTED_TYPES,
    TrainedModel,
    evaluate,
)

T = TypeVar("T")

MODEL_ARTIFACT_NAME = "model"
HOLDOUT_ARTIFACT_DIR = "holdout"
HOLDOUT_ARTIFACT = f"{HOLDOUT_ARTIFACT_DIR}/holdout.parquet"
REPORT_ARTIFACT = "promotion/report.md"
DEFAULT_MIN_AUC_DELTA = 0.005
# 0.705 - 0.700 is 0.00499999... in floats; a delta equal to the threshold up to
# float error reaches it. Far below AUC resolution (1 / (positives * negatives)).
_DELTA_TOLERANCE = 1e-9

# Run and model version tags.
TAG_PARTITION_KEY = "partition_key"
TAG_DAGSTER_RUN_ID = "dagster_run_id"
TAG_DATA_WINDOW = "data_window"
TAG_DECISION = "decision"
TAG_CHALLENGER_AUC = "challenger_auc"
TAG_CHAMPION_AUC = "champion_auc"
TAG_DELTA = "delta"
TAG_MIN_DELTA = "min_delta"
TAG_REASON = "reason"
TAG_DECIDED_AT = "decided_at"
TAG_PREVIOUS_CHAMPION = "previous_champion_version"
TAG_REPLACED_BY = "replaced_by_version"
TAG_REPLACED_AT = "replaced_at"
TAG_ROLLED_BACK_TO = "rolled_back_to_version"
TAG_ROLLED_BACK_AT = "rolled_back_at"
TAG_RESTORED_FROM = "restored_from_version"
TAG_RESTORED_AT = "restored_at"

PROMOTED = "promoted"
REJECTED = "rejected"

# Errors worth another attempt: connection failures surface as INTERNAL_ERROR
# from the REST store, a locked sqlite store as TEMPORARILY_UNAVAILABLE.
_TRANSIENT_ERROR_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
)
_TRANSIENT_EXCEPTIONS = (ConnectionError, TimeoutError, RequestsConnectionError, RequestsTimeout)
_URI_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_FLUENT_LOCK = threading.RLock()


class MlflowUnavailableError(RuntimeError):
    """The tracking server kept failing after every retry."""


class NoPreviousChampionError(RuntimeError):
    """Rollback asked for, but the champion has no recorded predecessor."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: after the n-th failure, wait between c/2 and c
    seconds, c = min(max_delay, base_delay * 2**(n-1))."""

    attempts: int = 4
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0

    def delay(self, failed_attempts: int) -> float:
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failed_attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY = RetryPolicy()


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


@dataclass(frozen=True)
class Decision:
    """Champion/challenger verdict; `delta` is None when there was no champion."""

    promote: bool
    challenger_auc: float
    champion_auc: float | None
    delta: float | None
    min_delta: float
    reason: str


@dataclass(frozen=True)
class Rollback:
    """A champion change made by `rollback`."""

    rolled_back_version: str
    restored_version: str
    at: str
    report: str


def version_number(version: ModelVersion | str | int) -> str:
    """A version number as a string: the sqlite store returns ints, REST and tags strings."""
    return str(version.version if isinstance(version, ModelVersion) else version)


def connect(tracking_uri: str) -> MlflowClient:
    """Client whose registry is the tracking store (DESIGN.md §6).

    Passing registry_uri explicitly keeps MLFLOW_REGISTRY_URI or a stray
    mlflow.set_registry_uri() elsewhere in the process from redirecting the registry.
    """
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def call_with_retry(
    client: MlflowClient,
    what: str,
    fn: Callable[..., T],
    *args,
    retry: RetryPolicy = DEFAULT_RETRY,
    **kwargs,
) -> T:
    """Call fn, retrying transient MLflow failures; other errors propagate at once.

    MLflow's REST client retries each HTTP request on its own too
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES); this layer covers whole operations and the sqlite store.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn(*args, **kwargs)
        except MlflowException as err:
            if err.error_code not in _TRANSIENT_ERROR_CODES:
                raise
            last_error: Exception = err
        except _TRANSIENT_EXCEPTIONS as err:
            last_error = err
        if attempt < retry.attempts:
            time.sleep(retry.delay(attempt))
    raise MlflowUnavailableError(
        f"MLflow at {client.tracking_uri} failed to {what} after {retry.attempts} attempts: "
        f"{last_error}"
    ) from last_error


@contextmanager
def _fluent_uris(client: MlflowClient) -> Iterator[None]:
    """Point MLflow's process-global URIs at this client's stores, then restore them.

    mlflow.sklearn.log_model and load_model only read the global URIs.
    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, so
    the variables are restored too. The lock keeps threads of this process from
    interleaving scopes; Dagster's default executor runs each step in its own process.
    """
    with _FLUENT_LOCK:
        saved_tracking = tracking_globals._tracking_uri
        saved_registry = registry_globals._registry_uri
        saved_env = {name: os.environ.get(name) for name in _URI_ENV_VARS}
        # MlflowClient has no public accessor for its registry URI.
        mlflow.set_tracking_uri(client.tracking_uri)
        mlflow.set_registry_uri(client._registry_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking)
            mlflow.set_registry_uri(saved_registry)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


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
    retry: RetryPolicy = DEFAULT_RETRY,
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


def _ensure_registered_model(client: MlflowClient, model_name: str, retry: RetryPolicy) -> None:
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


def _abandon_run(client: MlflowClient, model_name: str, run_id: str, retry: RetryPolicy) -> None:
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
    experiment_name: str = MLFLOW_EXPERIMENT,
    model_name: str = REGISTERED_MODEL_NAME,
    ui_url: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> LoggedVersion:
    """Log one training as one MLflow run and register it as a new model version.

    The run ends FINISHED only once the version exists; on any failure the run
    ends FAILED and no version from it is left registered. The holdout goes
    along as a parquet artifact so promotion scores champion and challenger on
    the same rows. ui_url (the MLflow UI) defaults to an http(s) tracking URI.
    """
    experiment_id = ensure_experiment(client, artifact_root, experiment_name, retry=retry)
    identity = {
        TAG_PARTITION_KEY: partition_key,
        TAG_DAGSTER_RUN_ID: dagster_run_id,
        TAG_DATA_WINDOW: data_window,
    }
    params = {**trained.params.as_dict(), "estimator": type(trained.model[-1]).__name__}
    metrics = {**trained.metrics, "fit_seconds": trained.fit_seconds}
    run = call_with_retry(
        client,
        "create the run",
        client.create_run,
        experiment_id,
        run_name=f"churn_{partition_key}",
        tags=identity,
        retry=retry,
    )
    run_id = run.info.run_id
    try:
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
        with _fluent_uris(client):
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
        with tempfile.TemporaryDirectory() as scratch:
            holdout_path = Path(scratch) / Path(HOLDOUT_ARTIFACT).name
            trained.holdout.to_parquet(holdout_path, index=False)
            call_with_retry(
                client,
                "log the holdout",
                client.log_artifact,
                run_id,
                str(holdout_path),
                HOLDOUT_ARTIFACT_DIR,
                retry=retry,
            )
        _ensure_registered_model(client, model_name, retry)
        # The sqlite registry resolves a models:/<model_id> source through the
        # global tracking URI (an MLflow TODO), hence the scope here too.
        with _fluent_uris(client):
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
        call_with_retry(
            client, "finish the run", client.set_terminated, run_id, "FINISHED", retry=retry
        )
    except BaseException as err:
        try:
            _abandon_run(client, model_name, run_id, retry)
        except Exception as cleanup_error:
            err.add_note(f"cleanup of MLflow run {run_id} also failed: {cleanup_error}")
        raise
    base_url = ui_url or (client.tracking_uri if client.tracking_uri.startswith("http") else None)
    ui_path = f"#/experiments/{experiment_id}/runs/{run_id}"
    return LoggedVersion(
        run_id=run_id,
        experiment_id=experiment_id,
        model_version=version_number(version),
        model_uri=f"models:/{model_name}/{version_number(version)}",
        run_ui_path=ui_path,
        run_url=f"{base_url.rstrip('/')}/{ui_path}" if base_url else None,
        metrics=metrics,
    )


def get_champion(
    client: MlflowClient,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ModelVersion | None:
    """The version behind the `champion` alias; None before the first promotion.

    Reads the alias map rather than get_model_version_by_alias: a missing alias
    there is INVALID_PARAMETER_VALUE, indistinguishable from a real bad request.
    """
    try:
        model = call_with_retry(
            client, "read the registered model", client.get_registered_model, model_name, retry=retry
        )
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = model.aliases.get(CHAMPION_ALIAS)
    if version is None:
        return None
    return call_with_retry(
        client, "read the champion version", client.get_model_version, model_name, version, retry=retry
    )


def decide_promotion(
    challenger_auc: float,
    champion_auc: float | None,
    min_delta: float = DEFAULT_MIN_AUC_DELTA,
) -> Decision:
    """Promote when there is no champion or the challenger's AUC beats it by >= min_delta."""
    for name, auc in (("challenger", challenger_auc), ("champion", champion_auc)):
        if auc is not None and not (math.isfinite(auc) and 0.0 <= auc <= 1.0):
            raise ValueError(f"{name} AUC {auc!r} is not a number in [0, 1]")
    if champion_auc is None:
        return Decision(
            promote=True,
            challenger_auc=challenger_auc,
            champion_auc=None,
            delta=None,
            min_delta=min_delta,
            reason=f"no champion yet; challenger AUC {challenger_auc:.4f} becomes the first champion",
        )
    delta = challenger_auc - champion_auc
    promote = delta + _DELTA_TOLERANCE >= min_delta
    verdict = "reaches" if promote else "falls short of"
    outcome = "challenger promoted" if promote else "champion kept"
    return Decision(
        promote=promote,
        challenger_auc=challenger_auc,
        champion_auc=champion_auc,
        delta=delta,
        min_delta=min_delta,
        reason=(
            f"challenger AUC {challenger_auc:.4f} vs champion {champion_auc:.4f}: "
            f"delta {delta:+.4f} {verdict} the required {min_delta:.4f}; {outcome}"
        ),
    )


def load_model_version(
    client: MlflowClient,
    version: ModelVersion | str,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
):
    """The sklearn pipeline of a registered version, loaded from models:/<name>/<version>."""
    number = version_number(version)
    with _fluent_uris(client):
        return call_with_retry(
            client,
            f"load model version {number}",
            mlflow.sklearn.load_model,
            f"models:/{model_name}/{number}",
            retry=retry,
        )


def load_holdout(client: MlflowClient, run_id: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> pd.DataFrame:
    """The holdout rows a training run was measured on."""
    with tempfile.TemporaryDirectory() as scratch:
        local = call_with_retry(
            client,
            "download the holdout",
            client.download_artifacts,
            run_id,
            HOLDOUT_ARTIFACT,
            scratch,
            retry=retry,
        )
        return pd.read_parquet(local)


def compare_on_holdout(
    client: MlflowClient,
    challenger_version: ModelVersion | str,
    champion_version: ModelVersion | str | None,
    holdout_df: pd.DataFrame,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> tuple[float, float | None]:
    """ROC AUC of challenger and champion (None without one) on the same holdout rows."""
    X = holdout_df.loc[:, list(FEATURE_COLUMNS)]
    y = holdout_df[LABEL_COLUMN]

    def auc(version: ModelVersion | str) -> float:
        return evaluate(load_model_version(client, version, model_name, retry=retry), X, y)["roc_auc"]

    return auc(challenger_version), (auc(champion_version) if champion_version is not None else None)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _fmt_auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def promotion_report(
    decision: Decision,
    challenger: ModelVersion,
    previous_champion: ModelVersion | None,
) -> str:
    """Markdown summary of a decision, in the seed's table style."""
    partition = challenger.tags.get(TAG_PARTITION_KEY, "unknown partition")
    before = f"v{version_number(previous_champion)}" if previous_champion else "none"
    after = f"v{version_number(challenger)}" if decision.promote else before
    delta = "n/a" if decision.delta is None else f"{decision.delta:+.4f}"
    action = "PROMOTED" if decision.promote else "KEPT CHAMPION"
    return (
        f"## Churn model promotion - {partition}\n\n"
        "| Metric | Value |\n"
        "|--------|-------|\n"
        f"| Challenger | `v{version_number(challenger)}` |\n"
        f"| Champion before | `{before}` |\n"
        f"| Challenger AUC | `{_fmt_auc(decision.challenger_auc)}` |\n"
        f"| Champion AUC | `{_fmt_auc(decision.champion_auc)}` |\n"
        f"| Improvement | `{delta}` |\n"
        f"| Required improvement | `{decision.min_delta:.4f}` |\n"
        f"| Decision | **{action}** |\n"
        f"| Champion now | `{after}` |\n\n"
        f"{decision.reason}\n"
    )


def _set_version_tags(
    client: MlflowClient, model_name: str, version: str, tags: Mapping[str, str], retry: RetryPolicy
) -> None:
    for key, value in tags.items():
        call_with_retry(
            client,
            f"tag model version {version}",
            client.set_model_version_tag,
            model_name,
            version,
            key,
            value,
            retry=retry,
        )


def promote(
    client: MlflowClient,
    decision: Decision,
    challenger_version: ModelVersion,
    previous_champion: ModelVersion | None,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> str:
    """Apply a decision: record it, move `champion` if it promotes, return the markdown report.

    Refuses when the alias moved since the comparison (another promotion or a
    rollback in between), because the recorded predecessor would then be wrong.
    A challenger that already is the champion (a retried step) changes nothing:
    recording it again would make it its own predecessor.
    """
    current = get_champion(client, model_name, retry=retry)
    current_number = version_number(current) if current else None
    expected = version_number(previous_champion) if previous_champion else None
    challenger = version_number(challenger_version)
    if current_number == challenger:
        return f"## Churn model promotion\n\n`v{challenger}` already is the champion; nothing changed.\n"
    if current_number != expected:
        raise RuntimeError(
            f"champion of {model_name!r} is now {current_number or 'unset'}, "
            f"not {expected or 'unset'} as when compared; rerun the comparison"
        )
    decided_at = _now()
    _set_version_tags(
        client,
        model_name,
        challenger,
        {
            TAG_DECISION: PROMOTED if decision.promote else REJECTED,
            TAG_CHALLENGER_AUC: f"{decision.challenger_auc:.6f}",
            TAG_CHAMPION_AUC: "none" if decision.champion_auc is None else f"{decision.champion_auc:.6f}",
            TAG_DELTA: "none" if decision.delta is None else f"{decision.delta:+.6f}",
            TAG_MIN_DELTA: f"{decision.min_delta:.6f}",
            TAG_REASON: decision.reason,
            TAG_DECIDED_AT: decided_at,
            TAG_PREVIOUS_CHAMPION: expected or "none",
        },
        retry,
    )
    if decision.promote:
        call_with_retry(
            client,
            "move the champion alias",
            client.set_registered_model_alias,
            model_name,
            CHAMPION_ALIAS,
            challenger,
            retry=retry,
        )
        if expected is not None:
            _set_version_tags(
                client,
                model_name,
                expected,
                {TAG_REPLACED_BY: challenger, TAG_REPLACED_AT: decided_at},
                retry,
            )
    report = promotion_report(decision, challenger_version, previous_champion)
    if challenger_version.run_id:
        call_with_retry(
            client,
            "log the promotion report",
            client.log_text,
            challenger_version.run_id,
            report,
            REPORT_ARTIFACT,
            retry=retry,
        )
    return report


def rollback(
    client: MlflowClient,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Rollback:
    """Undo the promotion that made the current champion (see the module docstring)."""
    current = get_champion(client, model_name, retry=retry)
    if current is None:
        raise NoPreviousChampionError(f"{model_name!r} has no champion to roll back")
    demoted = version_number(current)
    previous = current.tags.get(TAG_PREVIOUS_CHAMPION, "none")
    if previous == "none":
        raise NoPreviousChampionError(
            f"champion v{demoted} of {model_name!r} has no recorded previous champion"
        )
    try:
        call_with_retry(
            client, f"read version {previous}", client.get_model_version, model_name, previous, retry=retry
        )
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise NoPreviousChampionError(
            f"previous champion v{previous} of {model_name!r} no longer exists"
        ) from err
    call_with_retry(
        client,
        "move the champion alias",
        client.set_registered_model_alias,
        model_name,
        CHAMPION_ALIAS,
        previous,
        retry=retry,
    )
    at = _now()
    _set_version_tags(
        client,
        model_name,
        demoted,
        {TAG_ROLLED_BACK_TO: previous, TAG_ROLLED_BACK_AT: at},
        retry,
    )
    _set_version_tags(
        client, model_name, previous, {TAG_RESTORED_FROM: demoted, TAG_RESTORED_AT: at}, retry
    )
    report = (
        f"## Churn model rollback\n\n"
        "| Metric | Value |\n"
        "|--------|-------|\n"
        f"| Rolled back | `v{demoted}` |\n"
        f"| Champion now | `v{previous}` |\n"
        f"| At | `{at}` |\n"
    )
    return Rollback(rolled_back_version=demoted, restored_version=previous, at=at, report=report)
