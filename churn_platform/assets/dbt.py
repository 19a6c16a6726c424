"""dbt models as assets: weekly features and weekly labels, from the daily activity aggregate.

Each partition window reaches dbt as the vars built by the pure functions below (through
CHURN_DBT_WINDOW, so dbt's saved parse stays valid: resources/dbt.py); the models filter on
them, so a run rebuilds exactly its window. Guards refuse to build a window whose inputs have
not landed: labels never guess.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from churn_platform import automation
from churn_platform.constants import CHURN_LABELS, USER_DAILY_ACTIVITY, USER_FEATURES, WAREHOUSE_POOL
from churn_platform.partitions import (
    FEATURE_WINDOW_MAPPING,
    LABEL_WINDOW_MAPPING,
    TRAINING_FEATURES_MAPPING,
    week_window,
)
from churn_platform.quality import feature_metrics, label_metrics
from churn_platform.readiness import days_missing_activity, days_not_ingested, feature_dates_missing
from churn_platform.resources.dbt import DBT_PROJECT, OfflineDbtCliResource
from churn_platform.resources.warehouse import Warehouse
from churn_platform.windows import WeekWindow


def weekly_vars(weeks: WeekWindow) -> dict[str, str]:
    """user_features at the partition's Sundays; churn_labels at the earlier Sundays whose
    label windows close at the partition's Sundays."""
    first_label, last_label = weeks.label_as_of_range
    return {
        "min_as_of": weeks.first_as_of.isoformat(),
        "max_as_of": weeks.last_as_of.isoformat(),
        "label_min_as_of": first_label.isoformat(),
        "label_max_as_of": last_label.isoformat(),
    }


class ChurnDbtTranslator(DagsterDbtTranslator):
    """Gives the weekly models their true time dependencies on the daily aggregate."""

    _MAPPINGS: Mapping[tuple[str, str], dg.PartitionMapping] = {
        (USER_FEATURES, USER_DAILY_ACTIVITY): FEATURE_WINDOW_MAPPING,
        (CHURN_LABELS, USER_DAILY_ACTIVITY): LABEL_WINDOW_MAPPING,
        (CHURN_LABELS, USER_FEATURES): TRAINING_FEATURES_MAPPING,
    }

    _AUTOMATION: Mapping[str, dg.AutomationCondition] = {
        USER_FEATURES: automation.weekly_table(),
        CHURN_LABELS: automation.weekly_table(),
    }

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        return self._AUTOMATION.get(dbt_resource_props["name"])

    def get_partition_mapping(
        self, dbt_resource_props: Mapping[str, Any], dbt_parent_resource_props: Mapping[str, Any]
    ) -> dg.PartitionMapping | None:
        pair = (dbt_resource_props["name"], dbt_parent_resource_props["name"])
        return self._MAPPINGS.get(pair)


TRANSLATOR = ChurnDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def _guard(failures: list[str], what: str) -> None:
    if failures:
        raise dg.Failure(
            description=f"{what}:\n" + "\n".join(failures),
            metadata={"problems": len(failures)},
            allow_retries=False,
        )


def _run_dbt(context, dbt: OfflineDbtCliResource, select: str, window: dict[str, str]):
    context.log.info(f"dbt build --select {select}, window {json.dumps(window)}")
    invocation = dbt.cli(["build", "--select", select], window=window, context=context)
    return list(invocation.stream())


def _partitioned_dbt_assets(model: str, partitions_def, backfill_policy: dg.BackfillPolicy):
    """@dbt_assets for one model: its own partitions and backfill policy, the warehouse pool."""
    return dbt_assets(
        manifest=DBT_PROJECT.manifest_path,
        select=model,
        name=f"{model}_dbt",
        partitions_def=partitions_def,
        dagster_dbt_translator=TRANSLATOR,
        backfill_policy=backfill_policy,
        pool=WAREHOUSE_POOL,
        project=DBT_PROJECT,
    )


# One run (one dbt call) for a whole backfill or automation request.
BACKFILL = dg.BackfillPolicy.single_run()


def build_dbt_assets(weekly) -> list[dg.AssetsDefinition]:
    # Two assets, not one multi-asset: they map the daily aggregate differently (the feature
    # lookback vs the label window), and one node can only carry one mapping per input.
    @_partitioned_dbt_assets(USER_FEATURES, weekly, BACKFILL)
    def features(
        context: dg.AssetExecutionContext, dbt: OfflineDbtCliResource, warehouse: Warehouse
    ):
        """Contract features at each weekly as-of date (docs/contract.md §3), once their days landed."""
        weeks = week_window(context.partition_time_window)
        first, last = weeks.feature_input_days
        with warehouse.connect(read_only=True) as con:
            problems = _inputs_missing(con, first, last)
        _guard(problems, f"user_features for as-of {weeks.first_as_of}..{weeks.last_as_of} needs days {first}..{last}")
        events = _run_dbt(context, dbt, USER_FEATURES, weekly_vars(weeks))
        with warehouse.connect(read_only=True) as con:
            metrics = feature_metrics(con, [weeks.last_as_of])[weeks.last_as_of]
        yield from _with_metadata(events, {USER_FEATURES: {**metrics, "as_of_date": weeks.last_as_of.isoformat()}})

    @_partitioned_dbt_assets(CHURN_LABELS, weekly, BACKFILL)
    def labels(
        context: dg.AssetExecutionContext, dbt: OfflineDbtCliResource, warehouse: Warehouse
    ):
        """Churn labels of the as-of date whose label window closes at the partition's Sunday.

        Built only when every day of the label window has been ingested and the features of
        that as-of date exist: a label is never guessed.
        """
        weeks = week_window(context.partition_time_window)
        first_label, last_label = weeks.label_as_of_range
        with warehouse.connect(read_only=True) as con:
            problems = _inputs_missing(con, *weeks.label_input_days)
            problems += feature_dates_missing(con, first_label, last_label)
        _guard(problems, f"labels for as-of {first_label}..{last_label} cannot be built yet")
        events = _run_dbt(context, dbt, CHURN_LABELS, weekly_vars(weeks))
        with warehouse.connect(read_only=True) as con:
            metrics = label_metrics(con, [last_label])[last_label]
        yield from _with_metadata(events, {CHURN_LABELS: {**metrics, "label_as_of_date": last_label.isoformat()}})

    return [features, labels]


def _inputs_missing(con, first: dt.date, last: dt.date) -> list[str]:
    return days_not_ingested(con, first, last) + days_missing_activity(con, first, last)


def _with_metadata(events: list, metadata_by_asset: dict[str, dict]):
    """Attach partition statistics to the assets' materializations (the UI plots numbers)."""
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in metadata_by_asset:
            event = event.with_metadata({**event.metadata, **metadata_by_asset[event.output_name]})
        yield event
