"""Champion and challenger (docs/contract.md §4): compare, promote, roll back.

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
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from churn_platform.constants import (
    CHAMPION_ALIAS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    REGISTERED_MODEL_NAME,
)
from churn_platform.ml.artifacts import load_model_version
from churn_platform.ml.mlflow_io import (
    DEFAULT_RETRY,
    MlflowRetry,
    call_with_retry,
    version_number,
)
from churn_platform.ml.registration import TAG_PARTITION_KEY
from churn_platform.ml.training import evaluate

REPORT_ARTIFACT = "promotion/report.md"
DEFAULT_MIN_AUC_DELTA = 0.005
# 0.705 - 0.700 is 0.00499999... in floats; a delta equal to the threshold up to
# float error reaches it. Far below AUC resolution (1 / (positives * negatives)).
_DELTA_TOLERANCE = 1e-9

# Decision tags on model versions.
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


class NoPreviousChampionError(RuntimeError):
    """Rollback asked for, but the champion has no recorded predecessor."""


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


def get_model_version(
    client: MlflowClient,
    version: str | int,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> ModelVersion:
    """One registered version, with its tags and aliases."""
    number = version_number(version)
    return call_with_retry(
        client, f"read version {number}", client.get_model_version, model_name, number, retry=retry
    )


def get_champion(
    client: MlflowClient,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
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


def compare_on_holdout(
    client: MlflowClient,
    challenger_version: ModelVersion | str,
    champion_version: ModelVersion | str | None,
    holdout_df: pd.DataFrame,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
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
    """Markdown summary of a decision, in the table style of the origin lesson's report."""
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
    client: MlflowClient, model_name: str, version: str, tags: Mapping[str, str], retry: MlflowRetry
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
    retry: MlflowRetry = DEFAULT_RETRY,
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
    retry: MlflowRetry = DEFAULT_RETRY,
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
        get_model_version(client, previous, model_name, retry=retry)
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
