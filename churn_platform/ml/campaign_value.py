"""The value of a retention campaign on the top k % by score, champion beside challenger.

Information for the promotion report, never a gate: the economics are assumptions the team sets
(`ContactEconomics`), printed with the table.
"""

from __future__ import annotations

from churn_platform.contact_economics import ContactEconomics
from churn_platform.ml.evaluation import ContactValue, contact_expected_value
from churn_platform.ml.promotion import HoldoutScores


def campaign_values(scores: HoldoutScores, economics: ContactEconomics) -> dict[str, tuple[ContactValue, ...]]:
    """Expected value per top fraction for each model scored on the holdout."""
    models = {"challenger": scores.challenger, "champion": scores.champion}
    return {
        name: contact_expected_value(
            scores.labels, probability, contact_cost=economics.contact_cost,
            saved_value=economics.saved_customer_value, save_rate=economics.save_rate,
        )
        for name, probability in models.items()
        if probability is not None
    }


def campaign_value_markdown(values: dict[str, tuple[ContactValue, ...]], economics: ContactEconomics) -> str:
    names = list(values)
    rows = zip(*(values[name] for name in names))
    lines = [
        "### Expected value of contacting the top k % (on the holdout)",
        "",
        f"Assumed: a contact costs {economics.contact_cost:g}, a saved customer is worth "
        f"{economics.saved_customer_value:g}, the campaign keeps {economics.save_rate:.0%} of the churners it "
        "reaches (`CHURN_CONTACT_COST`, `CHURN_SAVED_CUSTOMER_VALUE`, `CHURN_SAVE_RATE`).",
        "",
        "| contacted | " + " | ".join(f"{name}: churners reached | {name}: expected value" for name in names) + " |",
        "|---|" + "---|---|" * len(names),
    ]
    for per_model in rows:
        first = per_model[0]
        cells = " | ".join(f"{v.positives_reached:,} | {v.expected_value:,.0f}" for v in per_model)
        lines.append(f"| top {first.fraction:.0%} ({first.contacted:,} users) | {cells} |")
    return "\n".join(lines)
