"""Jobs: what a sensor, a schedule or an operator launches as one run."""

from __future__ import annotations

import dagster as dg

from churn_platform.constants import RAW_EVENTS, USER_DAILY_ACTIVITY

INGEST_JOB = "ingest_job"


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    ingest = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(RAW_EVENTS, USER_DAILY_ACTIVITY),
        description="Load landed S3 files of UTC days into the warehouse and aggregate them per user.",
    )
    return [ingest]
