"""Champion and challenger (docs/contract.md §4): compare, promote, roll back.

Every function takes an explicit `MlflowClient` (build it with `connect`) and
leaves MLflow's process-wide state as it found it. The champion is the version
behind the alias `champion`; registry stages are deprecated and never used.

Decision history lives in model version tags:

- every decision is recorded on its challenger (`decision`, both AUCs, `delta`,
  `reason`, `decided_at`, `previous_champion_version`), once: a step that runs
  again finishes the recorded decision instead of deciding anew;
- a promotion also marks the replaced champion (`replaced_by_version`);
- promotions and rollbacks move the alias under the champion lease
  (`champion_lease`), one at a time.
- `rollback` moves the alias back to the current champion's
  `previous_champion_version` and marks both versions. The restored version
  keeps its own `previous_champion_version`, so each further rollback undoes
  one more promotion, walking back along the promotion chain until a champion
  that had no predecessor; a rolled-back version is never restored by rollback.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sklearn.metrics import roc_auc_score

from churn_platform.constants import (
    CHAMPION_ALIAS,
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    REGISTERED_MODEL_NAME,
)
from churn_platform.ml.artifacts import load_model_version
from churn_platform.ml.champion_lease import ChampionChangedError, champion_lease
from churn_platform.ml.evaluation import AucDeltaInterval
from churn_platform.ml.mlflow_io import (
    DEFAULT_RETRY,
    MlflowRetry,
    call_with_retry,
    version_number,
)
from churn_platform.ml.registration import TAG_PARTITION_KEY
from churn_platform.ml.model_card import MODEL_CARD_ARTIFACT, with_decision

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
TAG_DELTA_INTERVAL = "delta_interval"  # JSON of the paired bootstrap interval (AucDeltaInterval)
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
    interval: AucDeltaInterval | None = None  # paired bootstrap of delta on the holdout; None without a champion


@dataclass(frozen=True)
class HoldoutScores:
    """Both models' churn probabilities on the challenger's holdout rows (champion None without one)."""

    labels: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray | None


@dataclass(frozen=True)
class Promotion:
    """A decision as recorded on its challenger (the first one made, if a step ran again)."""

    decision: Decision
    challenger_version: str
    previous_champion_version: str | None
    decided_at: str
    report: str


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
    interval: AucDeltaInterval | None = None,
) -> Decision:
    """Promote when there is no champion or the challenger's AUC beats it by >= min_delta.

    The bootstrap interval does not change the rule; it says whether the holdout can tell the
    two models apart, so a promotion on a difference within noise is reported as such.
    """
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
            + ("" if interval is None else f"; {noise_verdict(interval)}")
        ),
        interval=interval,
    )


def noise_verdict(interval: AucDeltaInterval) -> str:
    """One sentence: is the delta distinguishable from 0 on this holdout?"""
    bounds = f"{interval.confidence:.0%} interval [{interval.low:+.4f}, {interval.high:+.4f}]"
    if interval.within_noise:
        return f"the difference is within noise ({bounds} includes 0)"
    return f"the difference is real on this holdout ({bounds} excludes 0)"


def holdout_scores(
    client: MlflowClient,
    challenger_version: ModelVersion | str,
    champion_version: ModelVersion | str | None,
    holdout_df: pd.DataFrame,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> HoldoutScores:
    """Churn probabilities of challenger and champion (None without one) on the same holdout rows."""
    X = holdout_df.loc[:, list(FEATURE_COLUMNS)]

    def score(version: ModelVersion | str) -> np.ndarray:
        return load_model_version(client, version, model_name, retry=retry).predict_proba(X)[:, 1]

    return HoldoutScores(
        labels=holdout_df[LABEL_COLUMN].to_numpy(dtype=np.int64),
        challenger=score(challenger_version),
        champion=score(champion_version) if champion_version is not None else None,
    )


def holdout_aucs(scores: HoldoutScores) -> tuple[float, float | None]:
    """ROC AUC of challenger and champion on the holdout, as `evaluate` measures a training."""
    def auc(probability: np.ndarray) -> float:
        return float(roc_auc_score(scores.labels, probability))

    if len(np.unique(scores.labels)) < 2:
        raise ValueError("holdout has a single class; ROC AUC is undefined")
    return auc(scores.challenger), (auc(scores.champion) if scores.champion is not None else None)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _fmt_auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def promotion_report(decision: Decision, challenger: ModelVersion, previous_champion: str | None) -> str:
    """Markdown summary of a decision, in the table style of the origin lesson's report."""
    partition = challenger.tags.get(TAG_PARTITION_KEY, "unknown partition")
    before = f"v{previous_champion}" if previous_champion else "none"
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
        f"| Improvement, {_interval_label(decision.interval)} | `{_fmt_interval(decision.interval)}` |\n"
        f"| Required improvement | `{decision.min_delta:.4f}` |\n"
        f"| Decision | **{action}** |\n"
        f"| Champion now | `{after}` |\n\n"
        f"{decision.reason}\n"
    )


def _interval_label(interval: AucDeltaInterval | None) -> str:
    if interval is None:
        return "bootstrap interval"
    return f"{interval.confidence:.0%} paired bootstrap ({interval.n_resamples - interval.n_skipped} resamples)"


def _fmt_interval(interval: AucDeltaInterval | None) -> str:
    if interval is None:
        return "n/a"
    return f"[{interval.low:+.4f}, {interval.high:+.4f}]{' within noise' if interval.within_noise else ''}"


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


def _move_champion(client: MlflowClient, model_name: str, version: str, retry: MlflowRetry) -> None:
    call_with_retry(client, "move the champion alias", client.set_registered_model_alias,
                    model_name, CHAMPION_ALIAS, version, retry=retry)


def _champion_number(client: MlflowClient, model_name: str, retry: MlflowRetry) -> str | None:
    champion = get_champion(client, model_name, retry=retry)
    return version_number(champion) if champion else None


def _v(number: str | None) -> str:
    return f"v{number}" if number else "no champion"


def _recorded_decision(challenger: ModelVersion) -> tuple[Decision, str | None, str]:
    """(decision, previous champion, decided_at) from the tags `_record_decision` wrote."""
    tags = challenger.tags

    def optional_float(key: str) -> float | None:
        return None if tags[key] == "none" else float(tags[key])

    decision = Decision(
        promote=tags[TAG_DECISION] == PROMOTED,
        challenger_auc=float(tags[TAG_CHALLENGER_AUC]),
        champion_auc=optional_float(TAG_CHAMPION_AUC),
        delta=optional_float(TAG_DELTA),
        min_delta=float(tags[TAG_MIN_DELTA]),
        reason=tags[TAG_REASON],
        interval=AucDeltaInterval(**json.loads(tags[TAG_DELTA_INTERVAL])) if TAG_DELTA_INTERVAL in tags else None,
    )
    previous = tags[TAG_PREVIOUS_CHAMPION]
    return decision, (None if previous == "none" else previous), tags[TAG_DECIDED_AT]


def _record_decision(
    client: MlflowClient,
    model_name: str,
    challenger: str,
    decision: Decision,
    previous: str | None,
    retry: MlflowRetry,
) -> str:
    """Tag the challenger with the decision, `decision` last: its presence means the record is whole."""
    decided_at = _now()
    _set_version_tags(
        client,
        model_name,
        challenger,
        {
            TAG_CHALLENGER_AUC: f"{decision.challenger_auc:.6f}",
            TAG_CHAMPION_AUC: "none" if decision.champion_auc is None else f"{decision.champion_auc:.6f}",
            TAG_DELTA: "none" if decision.delta is None else f"{decision.delta:+.6f}",
            **({} if decision.interval is None else {TAG_DELTA_INTERVAL: json.dumps(decision.interval.to_dict())}),
            TAG_MIN_DELTA: f"{decision.min_delta:.6f}",
            TAG_REASON: decision.reason,
            TAG_DECIDED_AT: decided_at,
            TAG_PREVIOUS_CHAMPION: previous or "none",
            TAG_DECISION: PROMOTED if decision.promote else REJECTED,
        },
        retry,
    )
    return decided_at


def _apply_promotion(
    client: MlflowClient,
    model_name: str,
    challenger: ModelVersion,
    previous: str | None,
    decided_at: str,
    retry: MlflowRetry,
) -> None:
    """Move the alias to a challenger recorded as promoted and mark its predecessor; skip what is done.

    The challenger was champion already if it still is, or was since replaced or rolled back.
    """
    number = version_number(challenger)
    current = _champion_number(client, model_name, retry)
    applied = current == number or not {TAG_REPLACED_BY, TAG_ROLLED_BACK_TO}.isdisjoint(challenger.tags)
    if not applied:
        if current != previous:
            raise ChampionChangedError(
                f"v{number} of {model_name!r} is recorded as promoted over {_v(previous)}, but the "
                f"champion is now {_v(current)} and the promotion was never applied; delete its "
                f"`{TAG_DECISION}` tag to decide again"
            )
        _move_champion(client, model_name, number, retry)
        current = number
    if current == number and previous is not None:
        replaced = get_model_version(client, previous, model_name, retry=retry)
        if replaced.tags.get(TAG_REPLACED_BY) != number:
            _set_version_tags(
                client, model_name, previous, {TAG_REPLACED_BY: number, TAG_REPLACED_AT: decided_at}, retry
            )


def promote(
    client: MlflowClient,
    decision: Decision,
    challenger_version: ModelVersion,
    previous_champion: ModelVersion | None,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    appendix: str = "",
    ui_url: str | None = None,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> Promotion:
    """Record a decision on its challenger and apply it (move `champion` if it promotes).

    The report (the decision, then `appendix`, then a link to the model card) is logged on the
    challenger's run, and the decision completes the challenger's model card.

    Under the champion lease, so concurrent promotions and rollbacks take turns. A challenger
    decided before keeps that decision: a retried step finishes it (moves the alias if it has
    not moved, writes missing tags) rather than comparing the challenger with itself. A new
    decision is refused when the champion is no longer the one it was compared with.
    """
    number = version_number(challenger_version)
    expected = version_number(previous_champion) if previous_champion else None
    with champion_lease(client, f"promotion of v{number}", model_name, retry=retry):
        challenger = get_model_version(client, number, model_name, retry=retry)
        if TAG_DECISION in challenger.tags:
            decision, previous, decided_at = _recorded_decision(challenger)
        else:
            if expected == number:
                raise ValueError(
                    f"v{number} of {model_name!r} was compared with itself as champion; "
                    "a version is never its own predecessor"
                )
            current = _champion_number(client, model_name, retry)
            if current != expected:
                raise ChampionChangedError(
                    f"champion of {model_name!r} is now {_v(current)}, not {_v(expected)} as when "
                    f"v{number} was compared; rerun the comparison"
                )
            previous = expected
            decided_at = _record_decision(client, model_name, number, decision, previous, retry)
        if decision.promote:
            _apply_promotion(client, model_name, challenger, previous, decided_at, retry)
    report = promotion_report(decision, challenger, previous)
    if appendix:
        report += f"\n{appendix.strip()}\n"
    if challenger.run_id:
        report += f"\n{_card_link(challenger, model_name, ui_url)}\n"
        call_with_retry(
            client,
            "log the promotion report",
            client.log_text,
            challenger.run_id,
            report,
            REPORT_ARTIFACT,
            retry=retry,
        )
        _complete_model_card(client, challenger, model_name, report, retry)
    return Promotion(
        decision=decision,
        challenger_version=number,
        previous_champion_version=previous,
        decided_at=decided_at,
        report=report,
    )


def _card_link(challenger: ModelVersion, model_name: str, ui_url: str | None) -> str:
    number = version_number(challenger)
    where = f"`{MODEL_CARD_ARTIFACT}` on MLflow run `{challenger.run_id}`, and the description of v{number}"
    if ui_url:
        return f"Model card: [{model_name} v{number}]({ui_url.rstrip('/')}/#/models/{model_name}/versions/{number}) ({where})."
    return f"Model card: {where}."


def _complete_model_card(
    client: MlflowClient, challenger: ModelVersion, model_name: str, report: str, retry: MlflowRetry
) -> None:
    """Write the decision into the challenger's card (artifact and version description).

    A version registered before model cards existed has none: there is nothing to complete.
    """
    run_id = challenger.run_id
    listed = call_with_retry(client, "list the run's artifacts", client.list_artifacts, run_id, retry=retry)
    if MODEL_CARD_ARTIFACT not in {artifact.path for artifact in listed}:
        return
    with tempfile.TemporaryDirectory() as scratch:
        local = call_with_retry(
            client, "read the model card", client.download_artifacts, run_id, MODEL_CARD_ARTIFACT, scratch,
            retry=retry,
        )
        card = with_decision(Path(local).read_text(encoding="utf-8"), report)
    call_with_retry(client, "log the model card", client.log_text, run_id, card, MODEL_CARD_ARTIFACT, retry=retry)
    call_with_retry(
        client, "describe the model version", client.update_model_version, model_name,
        version_number(challenger), card, retry=retry,
    )


def rollback(
    client: MlflowClient,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
) -> Rollback:
    """Undo the promotion that made the current champion (see the module docstring)."""
    with champion_lease(client, f"rollback {uuid.uuid4().hex}", model_name, retry=retry):
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
        _move_champion(client, model_name, previous, retry)
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
