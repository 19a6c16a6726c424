"""dbt models as assets: the daily activity aggregate, weekly features and weekly labels.

Each partition window reaches dbt as --vars built by the pure functions below; the models
filter on them, so a run rebuilds exactly its window. Guards refuse to build a window whose
inputs have not landed: labels never guess.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from churn_platform.assets.warehouse_guards import (
    days_missing_activity,
    days_not_ingested,
    feature_dates_missing,
)
from churn_platform.constants import (
    CHURN_LABELS,
    FEATURE_COLUMNS,
    LABEL_WINDOW_DAYS,
    LOOKBACK_DAYS,
    USER_DAILY_ACTIVITY,
    USER_FEATURES,
    WAREHOUSE_POOL,
)
from churn_platform.dbt_project import DBT_PROJECT, OfflineDbtCliResource
from churn_platform.partitions import (
    FEATURE_WINDOW_MAPPING,
    LABEL_WINDOW_MAPPING,
    TRAINING_FEATURES_MAPPING,
    WeekWindow,
    week_window,
)
from churn_platform.resources.warehouse import DuckDBWarehouse


def daily_vars(window: dg.TimeWindow) -> dict[str, str]:
    """user_daily_activity: the partition's days, inclusive."""
    last = window.end.date() - dt.timedelta(days=1)
    return {"min_date": window.start.date().isoformat(), "max_date": last.isoformat()}


def weekly_vars(weeks: WeekWindow) -> dict[str, str]:
    """user_features at the partition's Sundays; churn_labels at the Sundays four weeks earlier,
    whose 28-day label windows close at the partition's Sundays."""
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


def _run_dbt(context, dbt: OfflineDbtCliResource, select: str, variables: dict[str, str]):
    context.log.info(f"dbt build --select {select} --vars {json.dumps(variables)}")
    invocation = dbt.cli(
        ["build", "--select", select, "--vars", json.dumps(variables)], context=context
    )
    return list(invocation.stream())


def build_dbt_assets(daily, weekly) -> list[dg.AssetsDefinition]:
    manifest = DBT_PROJECT.manifest_path

    @dbt_assets(
        manifest=manifest,
        select=USER_DAILY_ACTIVITY,
        name="user_daily_activity_dbt",
        partitions_def=daily,
        dagster_dbt_translator=TRANSLATOR,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        project=DBT_PROJECT,
    )
    def daily_activity(context: dg.AssetExecutionContext, dbt: OfflineDbtCliResource):
        """Per-user daily aggregate of raw_events, so weekly partitions never rescan raw rows."""
        yield from _run_dbt(context, dbt, USER_DAILY_ACTIVITY, daily_vars(context.partition_time_window))

    # Two assets, not one multi-asset: they map the daily aggregate differently (a 90-day
    # lookback vs the 28-day label window), and one node can only carry one mapping per input.
    @dbt_assets(
        manifest=manifest,
        select=USER_FEATURES,
        name="user_features_dbt",
        partitions_def=weekly,
        dagster_dbt_translator=TRANSLATOR,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        project=DBT_PROJECT,
    )
    def features(
        context: dg.AssetExecutionContext, dbt: OfflineDbtCliResource, warehouse: DuckDBWarehouse
    ):
        """Contract features at each weekly as-of date (DESIGN.md §3), once its 90 days landed."""
        weeks = week_window(context.partition_time_window)
        first = weeks.first_as_of - dt.timedelta(days=LOOKBACK_DAYS - 1)
        with warehouse.connect(read_only=True) as con:
            problems = _inputs_missing(con, first, weeks.last_as_of)
        _guard(problems, f"user_features for as-of {weeks.first_as_of}..{weeks.last_as_of} needs days {first}..{weeks.last_as_of}")
        events = _run_dbt(context, dbt, USER_FEATURES, weekly_vars(weeks))
        with warehouse.connect(read_only=True) as con:
            stats = feature_stats(con, weeks.last_as_of)
        yield from _with_metadata(events, {USER_FEATURES: stats})

    @dbt_assets(
        manifest=manifest,
        select=CHURN_LABELS,
        name="churn_labels_dbt",
        partitions_def=weekly,
        dagster_dbt_translator=TRANSLATOR,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        project=DBT_PROJECT,
    )
    def labels(
        context: dg.AssetExecutionContext, dbt: OfflineDbtCliResource, warehouse: DuckDBWarehouse
    ):
        """28-day churn labels of the as-of date four weeks before the partition's Sunday.

        Built only when every day of the label window has been ingested and the features of
        that as-of date exist: a label is never guessed.
        """
        weeks = week_window(context.partition_time_window)
        first_label, last_label = weeks.label_as_of_range
        window_end = last_label + dt.timedelta(days=LABEL_WINDOW_DAYS)
        with warehouse.connect(read_only=True) as con:
            problems = _inputs_missing(con, first_label + dt.timedelta(days=1), window_end)
            problems += feature_dates_missing(con, first_label, last_label)
        _guard(problems, f"labels for as-of {first_label}..{last_label} cannot be built yet")
        events = _run_dbt(context, dbt, CHURN_LABELS, weekly_vars(weeks))
        with warehouse.connect(read_only=True) as con:
            stats = label_stats(con, last_label)
        yield from _with_metadata(events, {CHURN_LABELS: stats})

    return [daily_activity, features, labels]


def _inputs_missing(con, first: dt.date, last: dt.date) -> list[str]:
    return days_not_ingested(con, first, last) + days_missing_activity(con, first, last)


def _with_metadata(events: list, stats_by_asset: dict[str, dict]):
    """Attach partition statistics to the assets' materializations (the UI plots numbers)."""
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in stats_by_asset:
            event = event.with_metadata({**event.metadata, **stats_by_asset[event.output_name]})
        yield event


def feature_stats(con, as_of: dt.date) -> dict[str, float]:
    columns = [c for c in FEATURE_COLUMNS if c != "plan_tier"]
    selects = ", ".join(
        [f"avg({c}) AS mean_{c}" for c in columns]
        + [f"avg(CASE WHEN {c} IS NULL THEN 1.0 ELSE 0.0 END) AS null_rate_{c}" for c in FEATURE_COLUMNS]
    )
    row = con.execute(
        f"SELECT count(*) AS population, {selects} FROM user_features WHERE as_of_date = ?", [as_of]
    ).fetchone()
    names = [d[0] for d in con.description]
    stats = {name: float(value or 0.0) for name, value in zip(names, row)}
    stats["population"] = int(row[0])
    stats["as_of_date"] = as_of.isoformat()
    return stats


def label_stats(con, as_of: dt.date) -> dict[str, float]:
    population, churners = con.execute(
        "SELECT count(*), coalesce(sum(churned), 0) FROM churn_labels WHERE as_of_date = ?", [as_of]
    ).fetchone()
    return {
        "label_as_of_date": as_of.isoformat(),
        "population": int(population),
        "churners": int(churners),
        "churn_rate": churners / population if population else 0.0,
    }
