"""Jobs: what a sensor, a schedule or an operator launches as one run."""

from __future__ import annotations

import dagster as dg

from churn_platform.constants import (
    CHURN_LABELS,
    CHURN_MODEL,
    CHURN_SCORES,
    PROMOTION_DECISION,
    RAW_EVENTS,
    USER_DAILY_ACTIVITY,
    USER_FEATURES,
)

INGEST_JOB = "ingest_job"
TRAINING_JOB = "weekly_training_job"

# Run-level timeouts, enforced by run monitoring (dagster.yaml): the origin lesson allowed 1 h for
# features and 8 h for the whole training flow.
INGEST_MAX_RUNTIME_SECONDS = 3600
TRAINING_MAX_RUNTIME_SECONDS = 8 * 3600


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    ingest = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(RAW_EVENTS, USER_DAILY_ACTIVITY),
        description="Load landed S3 files of UTC days into the warehouse and aggregate them per user.",
        tags={"dagster/max_runtime": INGEST_MAX_RUNTIME_SECONDS},
    )
    training = dg.define_asset_job(
        TRAINING_JOB,
        selection=dg.AssetSelection.assets(
            USER_FEATURES, CHURN_LABELS, CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES
        ),
        description="The weekly flow: features, labels, training, champion/challenger, scores.",
        tags={"dagster/max_runtime": TRAINING_MAX_RUNTIME_SECONDS},
    )
    return [ingest, training]
