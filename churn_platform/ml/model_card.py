"""The model card of a registered version: what it was trained on, how good it is, how it was decided.

Written when the version is registered (data window, population, metrics, tiers, calibration,
top features, drift against the champion of the day) and completed by the promotion step with
its decision. Stored as the run's `model_card.md` and as the version's description, so the
MLflow registry page shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from churn_platform.ml.holdout_evaluation import HoldoutEvaluation

MODEL_CARD_ARTIFACT = "model_card.md"
DECISION_HEADING = "## Decision"
TOP_FEATURES = 3


def model_card(
    *,
    version: str,
    partition_key: str,
    data_window: str,
    training_rows: int,
    holdout_rows: int,
    churn_rate: float,
    params: Mapping[str, object],
    evaluation: HoldoutEvaluation,
    drift: Mapping[str, float] | None,
    drift_reference: str | None,
    max_psi: float,
) -> str:
    """The card as markdown, without a decision (the promotion step appends it)."""
    lift, calibration = evaluation.lift, evaluation.calibration
    lines = [
        f"# churn_prediction v{version}",
        "",
        f"Weekly partition `{partition_key}`; {data_window}.",
        "",
        "## Population",
        f"{training_rows + holdout_rows:,} users: {training_rows:,} to fit, {holdout_rows:,} held out "
        f"(by a seeded hash of the user id); churn rate {churn_rate:.1%}.",
        "",
        "## Holdout metrics",
        "| metric | value |",
        "|---|---|",
        f"| ROC AUC | {evaluation.roc_auc:.4f} |",
        f"| top-decile lift | {lift.top_decile_lift:.2f} |",
        *(f"| precision / recall at top {t.fraction:.0%} | {t.precision:.3f} / {t.recall:.3f} |" for t in evaluation.top),
        f"| Brier score | {calibration.brier_score:.4f} |",
        "",
        "## Segments (plan tier)",
        "| plan tier | rows | ROC AUC |",
        "|---|---|---|",
        *(
            f"| {s.segment} | {s.rows:,} | {'undefined' if s.auc is None else f'{s.auc:.4f}'} |"
            for s in evaluation.tiers
        ),
        "",
        "## Calibration",
        "| predicted | rows | observed churn rate |",
        "|---|---|---|",
        *(
            f"| {b.lower:.1f}–{b.upper:.1f} | {b.count:,} | "
            f"{'–' if b.observed_rate is None else f'{b.observed_rate:.3f}'} |"
            for b in calibration.bins
            if b.count
        ),
        "",
        "## Top features (permutation importance)",
        *(
            f"{rank}. `{f.feature}`: ROC AUC drops {f.auc_drop:.4f} when shuffled"
            for rank, f in enumerate(evaluation.importance[:TOP_FEATURES], start=1)
        ),
        "",
        "## Drift at registration",
    ]
    if drift is None:
        lines.append("No champion to compare with: this version's training population is the first reference.")
    else:
        shifted = sorted((c for c, v in drift.items() if v > max_psi), key=lambda c: -drift[c])
        lines += [
            f"Population stability index of this training set against {drift_reference} "
            f"(above {max_psi} counts as shifted): "
            + (f"**shifted: {', '.join(shifted)}**." if shifted else "no feature shifted."),
            "",
            "| feature | PSI |",
            "|---|---|",
            *(f"| {column} | {value:.4f} |" for column, value in drift.items()),
        ]
    lines += [
        "",
        "## Training parameters",
        ", ".join(f"`{key}={value}`" for key, value in params.items()),
        "",
        DECISION_HEADING,
        "Not decided yet: `promotion_decision` writes it here.",
        "",
    ]
    return "\n".join(lines)


def with_decision(card: str, decision_markdown: str) -> str:
    """The card with its decision section replaced (idempotent: a retried step writes the same card)."""
    head = card.split(DECISION_HEADING, 1)[0]
    return f"{head}{DECISION_HEADING}\n{decision_markdown.strip()}\n"
