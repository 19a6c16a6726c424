"""MLflow tracking and registry as a resource that speaks the model's domain (docs/contract.md §4).

Assets ask it to register a training, name the champion, compare, promote or roll back; it
builds the client and retries every MLflow operation with backoff, so no asset holds a client
or calls MLflow itself. The work is done by `churn_platform.ml` (`registration`, `promotion`),
imported inside the methods: loading the code location imports neither mlflow nor sklearn.

Why not dagster-mlflow: its `mlflow_tracking` is a legacy function resource that starts a
fluent MLflow run when the resource initializes, sets process-global tracking URIs, and
ends the run in a hook that does not fire on every failure path. We need one run per
training that is always closed (FAILED on error), an explicit client per call, and no
global state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

    from churn_platform.ml.mlflow_io import MlflowRetry
    from churn_platform.ml.holdout_evaluation import HoldoutEvaluation
    from churn_platform.ml.promotion import Decision, HoldoutScores, Promotion, Rollback
    from churn_platform.ml.registration import LoggedVersion
    from churn_platform.ml.training import TrainedModel


@contextmanager
def _refusals_are_final() -> Iterator[None]:
    """An artifact that failed verification fails the step for good: a retry reads the same bytes."""
    from churn_platform.ml.artifacts import UntrustedArtifactError

    try:
        yield
    except UntrustedArtifactError as err:
        raise dg.Failure(str(err), allow_retries=False) from err


class MlflowRegistry(dg.ConfigurableResource):
    """Where models are tracked and registered; local sqlite store or a remote server."""

    tracking_uri: str
    artifact_root: str
    ui_url: str | None = None  # link for the Dagster UI; defaults to an http(s) tracking URI
    retry_attempts: int = 4
    retry_base_delay_seconds: float = 0.5

    def _session(self) -> tuple[MlflowClient, MlflowRetry]:
        from churn_platform.ml.mlflow_io import MlflowRetry, connect

        retry = MlflowRetry(attempts=self.retry_attempts, base_delay_seconds=self.retry_base_delay_seconds)
        return connect(self.tracking_uri), retry

    def ensure_experiment(self) -> str:
        """The training experiment's id (created if missing). Called before training too, so an
        unreachable tracking server fails the step in seconds, not after the model is fitted."""
        from churn_platform.ml.registration import ensure_experiment

        client, retry = self._session()
        return ensure_experiment(client, self.artifact_root, retry=retry)

    def register_training(
        self, trained: TrainedModel, *, partition_key: str, dagster_run_id: str, data_window: str,
        evaluation: HoldoutEvaluation, model_card: Callable[[str], str],
    ) -> LoggedVersion:
        """Log a training with its evaluation as one MLflow run and register it as a new version of
        the model, described by `model_card(version)`.

        On any failure the run ends FAILED and no version from it stays registered.
        """
        from churn_platform.ml.registration import log_and_register

        client, retry = self._session()
        return log_and_register(
            client,
            trained,
            artifact_root=self.artifact_root,
            partition_key=partition_key,
            dagster_run_id=dagster_run_id,
            data_window=data_window,
            evaluation=evaluation,
            model_card=model_card,
            ui_url=self.ui_url,
            retry=retry,
        )

    def champion(self) -> ModelVersion | None:
        """The version behind the `champion` alias; None before the first promotion."""
        from churn_platform.ml.promotion import get_champion

        client, retry = self._session()
        return get_champion(client, retry=retry)

    def model_version(self, number: str | int) -> ModelVersion:
        """A registered version of the model, with its tags and aliases."""
        from churn_platform.ml.promotion import get_model_version

        client, retry = self._session()
        return get_model_version(client, number, retry=retry)

    def holdout(self, run_id: str) -> pd.DataFrame:
        """The holdout rows (features and label) a training run was measured on, checksum verified."""
        from churn_platform.ml.artifacts import load_holdout

        client, retry = self._session()
        with _refusals_are_final():
            return load_holdout(client, run_id, retry=retry)

    def load_model(self, version: ModelVersion | str) -> Pipeline:
        """The fitted sklearn pipeline of a registered version; a pickled version is refused."""
        from churn_platform.ml.artifacts import load_model_version

        client, retry = self._session()
        with _refusals_are_final():
            return load_model_version(client, version, retry=retry)

    def score_holdout(
        self, challenger: ModelVersion | str, champion: ModelVersion | str | None, holdout: pd.DataFrame
    ) -> HoldoutScores:
        """Both models' churn probabilities (champion None without one) on the same holdout rows."""
        from churn_platform.ml.promotion import holdout_scores

        client, retry = self._session()
        with _refusals_are_final():
            return holdout_scores(client, challenger, champion, holdout, retry=retry)

    def promote(
        self, decision: Decision, challenger: ModelVersion, previous_champion: ModelVersion | None,
        appendix: str = "",
    ) -> Promotion:
        """Record the decision on the versions, move `champion` if it promotes, one promoter at a time;
        log the report (with `appendix`) and complete the challenger's model card.

        A challenger decided before keeps that decision (a retried step finishes it); a new one is
        refused with ChampionChangedError when the champion changed since the comparison.
        """
        from churn_platform.ml.promotion import promote

        client, retry = self._session()
        return promote(client, decision, challenger, previous_champion, appendix=appendix, ui_url=self.ui_url,
                       retry=retry)

    def record_realized(self, version: str, as_of: dt.date, metrics: dict[str, float]) -> None:
        """Log realized performance on the version's training run, one step per as-of date (days since
        1970), so MLflow plots it across weeks; logging the same date again overwrites nothing."""
        from mlflow.entities import Metric

        from churn_platform.ml.mlflow_io import call_with_retry

        client, retry = self._session()
        run_id = self.model_version(version).run_id
        step = (as_of - dt.date(1970, 1, 1)).days
        at = int(dt.datetime.combine(as_of, dt.time(), dt.timezone.utc).timestamp() * 1000)
        call_with_retry(client, "log realized performance", client.log_batch, run_id,
                        metrics=[Metric(key, float(value), at, step) for key, value in metrics.items()], retry=retry)

    def rollback(self) -> Rollback:
        """Point `champion` back at the current champion's predecessor and record it on both."""
        from churn_platform.ml.promotion import rollback

        client, retry = self._session()
        return rollback(client, retry=retry)
