"""`churn-platform demo` (`make demo`): the whole platform end to end, headless.

Starts its own local S3 (a free loopback port, so a running `make dev` keeps 9000),
restores the mirrored landing bucket or seeds it, then materializes through Dagster,
on the persistent instance, everything the two newest trainable weeks K-1 and K need:

1. `ingest_job` over every landed day, as one run;
2. `user_features` for weeks K-5..K and `churn_labels` for K-1..K, one range run each;
3. `churn_model`, `promotion_decision` and `churn_scores` for K-1, then for K, so the
   second decision compares a challenger with the champion the first one chose.

Re-running on existing state re-materializes the same partitions and never reseeds.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from churn_platform.dev.instance import configure_pools, install_instance_config
from churn_platform.dev.landing import land_demo_events
from churn_platform.dev.local_s3 import S3Mirror, local_s3_server
from churn_platform.dev.s3 import bucket_is_empty, ensure_bucket, s3_client
from churn_platform.constants import (
    CHURN_LABELS,
    CHURN_MODEL,
    CHURN_SCORES,
    PROMOTION_DECISION,
    RAW_EVENTS,
    USER_FEATURES,
)
from churn_platform.definitions import build_definitions
from churn_platform.resources import build_warehouse
from churn_platform.events import LANDING_PREFIX, parse_landing_key
from churn_platform.jobs import INGEST_JOB
from churn_platform.settings import Settings, default_demo_end_date
from churn_platform.windows import TRAINING_LAG_WEEKS, first_weekly_partition, newest_complete_monday

# K-5..K: the features of K-5 and K-4 feed the trainings of K-1 and K, which are scored.
FEATURE_WEEKS = TRAINING_LAG_WEEKS + 2
MODEL_ASSETS = (CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
DEMO_TAGS = {"churn/demo": "true"}
LOG_FILE = "demo.log"  # in CHURN_DATA_DIR: dbt, MLflow and Dagster console output of the runs
MLFLOW_UI_URL = "http://127.0.0.1:5000"


class DemoError(RuntimeError):
    """The demo cannot run on this data, or one of its Dagster runs failed."""


@dataclass(frozen=True)
class Week:
    """One weekly training: its inputs, the model it registered and the decision taken."""

    partition_key: str
    training_as_of: dt.date
    population: int
    churn_rate: float
    model: dict[str, Any]  # churn_model materialization metadata
    decision: dict[str, Any]  # promotion_decision materialization metadata


@dataclass(frozen=True)
class DemoResult:
    start_date: dt.date
    end_date: dt.date
    engine: str
    landed_files: int
    seeded_events: int | None  # None when the bucket already had data
    raw: dict[str, Any]  # raw_events materialization metadata of the ingest run
    weeks: list[Week]
    champion_version: str
    scores: dict[str, Any]  # churn_scores materialization metadata of week K
    ui_url: str
    seconds: float

    def report(self) -> str:
        landed = (f"seeded {self.seeded_events:,} events in {self.landed_files} files"
                  if self.seeded_events is not None
                  else f"{self.landed_files} files already landed (not reseeded)")
        lines = [
            f"Demo data {self.start_date}..{self.end_date}: {landed}; engine {self.engine}",
            f"raw_events: {self.raw['rows']:,} rows from {self.raw['files']} files over "
            f"{self.raw['days']} days ({self.raw['duplicates_removed']:,} duplicates removed, "
            f"{self.raw['rejected_rows']:,} rejected)",
        ]
        for week in self.weeks:
            model, decision = week.model, week.decision
            verdict = "PROMOTED" if decision["promoted"] else "KEPT the champion"
            lines += [
                f"week {week.partition_key}: trained on as-of {week.training_as_of}, "
                f"{week.population:,} users, churn rate {week.churn_rate:.1%}",
                f"  churn_model v{model['model_version']}: ROC AUC {model['roc_auc']:.4f}, top-decile lift "
                f"{model['top_decile_lift']:.2f}, Brier {model['brier_score']:.4f} "
                f"(evaluation {model['evaluation_seconds']:.2f} s, fit {model['fit_seconds']:.2f} s)",
                f"  promotion_decision: {verdict} (previous champion {decision['previous_champion']}, "
                f"delta {_number(decision['delta'])}): {decision['reason']}",
            ]
        lines += [
            f"champion: churn_prediction v{self.champion_version}",
            f"churn_scores as-of {self.scores['as_of_date']}: {self.scores['rows']:,} rows "
            f"from model v{self.scores['model_version']}, published to {self.scores['published_manifest']}",
            f"  drift against the champion's population: {self.scores['drift']}",
            f"Dagster UI: `make dev` -> {self.ui_url} (Assets -> churn_model -> evaluation; "
            "promotion_decision -> its report)",
            f"MLflow UI: `make mlflow-ui` -> {MLFLOW_UI_URL} (Models -> churn_prediction)",
            f"total {self.seconds:.1f} s",
        ]
        return "\n".join(lines)


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.4f}"


def newest_trainable_week(start_date: dt.date, end_date: dt.date) -> dt.date:
    """Monday of K, the newest week whose as-of Sunday is on or before end_date; K-5 must exist."""
    week_k = newest_complete_monday(end_date)
    oldest_needed = week_k - dt.timedelta(weeks=FEATURE_WEEKS - 1)
    if oldest_needed < first_weekly_partition(start_date):
        raise DemoError(
            f"data {start_date}..{end_date} is too short: the demo needs weekly partitions "
            f"{oldest_needed}..{week_k}, the first is {first_weekly_partition(start_date)} "
            "(the first whose feature window fits in the data): land more days"
        )
    return week_k


def landed_dates(client, bucket: str) -> tuple[int, list[dt.date]]:
    """Number of landed files and their sorted distinct dates."""
    files, dates = 0, set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=LANDING_PREFIX):
        for obj in page.get("Contents", []):
            day = parse_landing_key(obj["Key"])
            if day is not None:
                files += 1
                dates.add(dt.date.fromisoformat(day))
    return files, sorted(dates)


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr to a file at the descriptor level (dbt and MLflow
    write there directly); Dagster still captures each step's output for the UI."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in enumerate(saved, start=1):
                os.dup2(original, fd)
                os.close(original)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """The failed steps' errors and failed checks of a run, for the console."""
    problems = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            cause = f"\n    caused by: {error.cause.message.strip()}" if error and error.cause else ""
            problems.append(f"  step {event.step_key}: {error.message.strip() if error else 'failed'}{cause}")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            values = {k: v.value for k, v in evaluation.metadata.items()}
            problems.append(f"  check {evaluation.check_name} failed: {values}")
    return "\n".join(problems) or "  (no step error recorded)"


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset)
    return {k: v.value for k, v in event.materialization.metadata.items()}


def run_demo(
    users: int,
    days: int,
    end_date: dt.date | None = None,
    random_seed: int = 42,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Seed (if the bucket is empty), then materialize the two newest trainable weeks.

    env (default os.environ) configures Settings as everywhere else; DAGSTER_HOME is also
    set in os.environ, for `DagsterInstance.get()`.
    """
    from churn_platform.ml.mlflow_io import version_number
    from churn_platform.resources import build_mlflow_registry

    started = time.monotonic()

    def step(message: str) -> None:
        echo(f"[{time.monotonic() - started:6.1f} s] {message}")

    env = dict(os.environ if env is None else env)
    end_date = end_date or default_demo_end_date()
    if end_date > default_demo_end_date():
        raise DemoError(f"--end-date {end_date} is not a complete UTC day yet")
    settings = Settings.from_env(env)
    install_instance_config(settings)
    with local_s3_server(port=0) as endpoint:
        local = {"s3_endpoint_url": endpoint, "local_s3_credentials": True}
        files, dates, seeded_events = _land(settings.with_overrides(**local), users, days, end_date,
                                            random_seed, step)
        settings = Settings.from_env(env).with_overrides(**local)  # start date from the landed demo data
        dates = [d for d in dates if settings.start_date <= d <= default_demo_end_date()]
        if not dates:
            raise DemoError(f"s3://{settings.landing_bucket} has no landed day since {settings.start_date}")
        week_k = newest_trainable_week(settings.start_date, min(end_date, dates[-1]))
        step(f"{files} files landed for {dates[0]}..{dates[-1]}; newest trainable week K = {week_k}")
        ingest, trainings = _materialize(settings, dates[0], dates[-1], week_k, step)

    champion = build_mlflow_registry(settings).process_config_and_initialize().champion()
    return DemoResult(
        start_date=settings.start_date,
        end_date=dates[-1],
        engine=settings.engine,
        landed_files=files,
        seeded_events=seeded_events,
        raw=_metadata(ingest, RAW_EVENTS),
        weeks=[_week(settings, key, result) for key, result in trainings.items()],
        champion_version=version_number(champion) if champion else "none",
        scores=_metadata(trainings[week_k.isoformat()], CHURN_SCORES),
        ui_url=settings.ui_url,
        seconds=time.monotonic() - started,
    )


def _land(settings: Settings, users: int, days: int, end_date: dt.date, random_seed: int,
          step: Callable[[str], None]) -> tuple[int, list[dt.date], int | None]:
    """Restore the mirrored bucket, seed it if empty; returns (files, dates, events seeded)."""
    client = s3_client(settings.s3_endpoint_url)
    ensure_bucket(client, settings.landing_bucket)
    mirror = S3Mirror(client, settings.landing_bucket, settings.data_dir / "s3")
    restored = mirror.restore()
    step(f"local S3 at {settings.s3_endpoint_url}: restored {restored} object(s) "
         f"into s3://{settings.landing_bucket}")
    seeded_events = None
    if bucket_is_empty(client, settings.landing_bucket):
        newest_trainable_week(end_date - dt.timedelta(days=days - 1), end_date)  # fail before seeding
        step(f"seeding {users:,} users, {days} days ending {end_date} (seed {random_seed}) ...")
        _, seeded_events = land_demo_events(settings, users, days, end_date, random_seed, progress=step)
        mirror.sync()  # so `make dev` restores the same objects
    return *landed_dates(client, settings.landing_bucket), seeded_events


def _materialize(
    settings: Settings, first_day: dt.date, last_day: dt.date, week_k: dt.date, step: Callable[[str], None]
) -> tuple[dg.ExecuteInProcessResult, dict[str, dg.ExecuteInProcessResult]]:
    """The demo's runs on the persistent instance; returns the ingest run and the trainings by week."""
    log_path = settings.data_dir / LOG_FILE
    step(f"materializing through Dagster (DAGSTER_HOME={settings.dagster_home}); output in {log_path}")
    configure_pools(settings)  # also sets DAGSTER_HOME for DagsterInstance.get()
    with _output_to(log_path):  # resolving the jobs warns about beta features
        defs = build_definitions(settings)
        ingest_job = defs.resolve_job_def(INGEST_JOB)
        asset_job = defs.resolve_implicit_global_asset_job_def()

    def assets(*names: str) -> dg.JobDefinition:
        return asset_job.get_subset(asset_selection={dg.AssetKey(name) for name in names})

    def weeks_back(first: int, last: int) -> dict[str, str]:
        """Tags of one run over weekly partitions K-first..K-last."""
        return {
            **DEMO_TAGS,
            RANGE_START_TAG: (week_k - dt.timedelta(weeks=first)).isoformat(),
            RANGE_END_TAG: (week_k - dt.timedelta(weeks=last)).isoformat(),
        }

    with dg.DagsterInstance.get() as instance:

        def run(what: str, job: dg.JobDefinition, **kwargs) -> dg.ExecuteInProcessResult:
            run_started = time.monotonic()
            with _output_to(log_path):
                result = job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)
            if not result.success:
                raise DemoError(f"{what} failed (run {result.run_id}; full output in {log_path}):\n"
                                f"{_failure(result)}")
            step(f"{what}: ok in {time.monotonic() - run_started:.1f} s (run {result.run_id[:8]})")
            return result

        ingest = run(f"{INGEST_JOB} {first_day}...{last_day}", ingest_job, tags={
            **DEMO_TAGS, RANGE_START_TAG: first_day.isoformat(), RANGE_END_TAG: last_day.isoformat(),
        })
        run(f"{USER_FEATURES} K-5..K", assets(USER_FEATURES), tags=weeks_back(FEATURE_WEEKS - 1, 0))
        run(f"{CHURN_LABELS} K-1..K", assets(CHURN_LABELS), tags=weeks_back(1, 0))
        trainings = {}
        for monday in (week_k - dt.timedelta(weeks=1), week_k):
            key = monday.isoformat()
            trainings[key] = run(f"{' + '.join(MODEL_ASSETS)} {key}", assets(*MODEL_ASSETS),
                                 partition_key=key, tags=DEMO_TAGS)
    return ingest, trainings


def _week(settings: Settings, partition_key: str, result: dg.ExecuteInProcessResult) -> Week:
    """A training run's model and decision, with the labelled population it trained on."""
    model = _metadata(result, CHURN_MODEL)
    as_of = dt.date.fromisoformat(model["training_as_of"])
    with build_warehouse(settings).connect(read_only=True) as con:
        population, churn_rate = con.execute(
            "SELECT count(*), avg(churned) FROM churn_labels WHERE as_of_date = ?", [as_of]
        ).fetchone()
    return Week(
        partition_key=partition_key,
        training_as_of=as_of,
        population=population,
        churn_rate=churn_rate or 0.0,
        model=model,
        decision=_metadata(result, PROMOTION_DECISION),
    )
