"""Checks on each ingest of raw_events (docs/contract.md §5), evaluated by the asset itself.

They judge the load the asset just did (its row counts by reason, the table's schema), so
the asset yields their results in the same step; this module owns their specs and verdicts.
"""

from collections.abc import Iterator

import dagster as dg

from churn_platform.constants import RAW_EVENTS
from churn_platform.events import RAW_EVENTS_SCHEMA
from churn_platform.gate_thresholds import GateThresholds
from churn_platform.ingest.load import DayIngest

SCHEMA_CHECK = "raw_events_schema"
DUPLICATE_RATE_CHECK = "raw_events_duplicate_rate"
REJECTED_RATE_CHECK = "raw_events_rejected_rate"


def raw_events_check_specs(thresholds: GateThresholds) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(SCHEMA_CHECK, asset=RAW_EVENTS, blocking=True,
                          description="Warehouse table matches the event contract."),
        dg.AssetCheckSpec(DUPLICATE_RATE_CHECK, asset=RAW_EVENTS,
                          description=f"Share of duplicate event_ids removed is at most "
                                      f"{thresholds.max_duplicate_rate:.0%} (warns)."),
        dg.AssetCheckSpec(REJECTED_RATE_CHECK, asset=RAW_EVENTS, blocking=True,
                          description=f"Share of rows rejected by the row rules is at most "
                                      f"{thresholds.max_rejected_rate:.0%}."),
    ]


def rejected_by_reason(loaded: list[DayIngest]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for day in loaded:
        for reason, count in day.rejected_by_reason.items():
            totals[reason] = totals.get(reason, 0) + count
    return dict(sorted(totals.items()))


def raw_events_check_results(
    loaded: list[DayIngest], schema: dict[str, str], thresholds: GateThresholds
) -> Iterator[dg.AssetCheckResult]:
    rows_in = max(sum(d.rows_in for d in loaded), 1)
    duplicate_rate = sum(d.duplicates_removed for d in loaded) / rows_in
    by_reason = rejected_by_reason(loaded)
    rejected_rate = sum(by_reason.values()) / rows_in
    yield dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=schema == RAW_EVENTS_SCHEMA,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"schema": schema},
    )
    yield dg.AssetCheckResult(
        check_name=DUPLICATE_RATE_CHECK,
        passed=duplicate_rate <= thresholds.max_duplicate_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"duplicate_rate": duplicate_rate, "threshold": thresholds.max_duplicate_rate},
    )
    yield dg.AssetCheckResult(
        check_name=REJECTED_RATE_CHECK,
        passed=rejected_rate <= thresholds.max_rejected_rate,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rejected_rate": rejected_rate,
            "threshold": thresholds.max_rejected_rate,
            **{f"rejected_{reason}": n for reason, n in by_reason.items()},
        },
    )
