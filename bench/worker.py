"""The child-process side of the bench: one task per process, result written as JSON.

Usage (run by bench.child): python -m bench.worker TASK PARAMS_JSON OUT_JSON [--profile OUT.prof]
Platform tasks read the environment the way the code location does (Settings.from_env).
Each task returns a dict whose "seconds" is the measured operation.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

TASKS = {}


def task(fn):
    TASKS[fn.__name__] = fn
    return fn


def _vm_hwm_mb() -> float:
    """Peak resident set of this process (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _run_details(result, seconds: float) -> dict:
    """Success, per-step seconds and numeric materialization metadata of a Dagster run."""
    if not result.success:
        failed = [e for e in result.all_events if e.is_step_failure]
        messages = [f"{e.step_key}: {e.event_specific_data.error.message.strip()}" for e in failed]
        raise RuntimeError("run failed:\n" + "\n".join(messages or ["(no step failed: see the log)"]))
    steps = {
        e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events if e.is_step_success
    }
    metadata = {
        e.asset_key.to_user_string(): {
            k: v.value for k, v in e.materialization.metadata.items() if isinstance(v.value, (int, float))
        }
        for e in result.get_asset_materialization_events()
    }
    return {"seconds": seconds, "steps": steps, "metadata": metadata}


def _execute(job, **kwargs) -> dict:
    """execute_in_process on the DAGSTER_HOME instance; load_seconds is imports + definitions."""
    import dagster as dg

    load_seconds = time.perf_counter() - STARTED
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)
        return {**_run_details(result, time.perf_counter() - started), "load_seconds": load_seconds}


@task
def noop(params: dict) -> dict:
    """A run of one trivial weekly-partitioned asset: Dagster's own cost per run (no platform imports)."""
    import dagster as dg

    weekly = dg.WeeklyPartitionsDefinition(start_date=params["first_week"], day_offset=1, timezone="UTC")

    @dg.asset(partitions_def=weekly)
    def noop_asset():
        return dg.MaterializeResult()

    job = dg.Definitions(assets=[noop_asset], executor=dg.in_process_executor).resolve_implicit_global_asset_job_def()
    return _execute(job, partition_key=params["partition"])


@task
def noop_range(params: dict) -> dict:
    """ingest_job's shape with no-op bodies: two daily assets, one run over a day range."""
    import dagster as dg

    daily = dg.DailyPartitionsDefinition(start_date=params["start"], timezone="UTC")
    single_run = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=daily, backfill_policy=single_run)
    def noop_events():
        return dg.MaterializeResult()

    @dg.asset(partitions_def=daily, backfill_policy=single_run, deps=[noop_events])
    def noop_activity():
        return dg.MaterializeResult()

    definitions = dg.Definitions(assets=[noop_events, noop_activity], executor=dg.in_process_executor)
    return _execute(definitions.resolve_implicit_global_asset_job_def(), tags=_range_tags(params))


def _range_tags(params: dict) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": params["start"],
            "dagster/asset_partition_range_end": params["end"]}


@task
def ingest(params: dict) -> dict:
    """ingest_job (raw_events + user_daily_activity) over a day range, as one run."""
    from churn_platform.definitions import build_definitions
    from churn_platform.jobs import INGEST_JOB
    from churn_platform.settings import Settings

    job = build_definitions(Settings.from_env()).resolve_job_def(INGEST_JOB)
    return _execute(job, tags=_range_tags(params))


@task
def materialize(params: dict) -> dict:
    """Some assets (and their checks) of one weekly partition, as one run."""
    import dagster as dg

    from churn_platform.definitions import build_definitions
    from churn_platform.settings import Settings

    keys = {dg.AssetKey(a) for a in params["assets"]}
    job = build_definitions(Settings.from_env()).resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=keys
    )
    return _execute(job, partition_key=params["partition"])


@task
def floor_ingest(params: dict) -> dict:
    """Plain DuckDB read of every landed file written into a table of a new database file."""
    import duckdb

    from bench import floor

    database = Path(params["database"])
    database.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(database)) as con:
        rows = floor.ingest(con, params["glob"])
    return {"seconds": time.perf_counter() - started, "rows": rows}


@task
def floor_features(params: dict) -> dict:
    """One DuckDB scan of the landed files computing features at A and labels at A - 28."""
    import duckdb

    from bench import floor

    started = time.perf_counter()
    with duckdb.connect(params["database"]) as con:
        con.execute("DROP TABLE IF EXISTS features_labels")
        rows = floor.features_labels(con, params["glob"], dt.date.fromisoformat(params["as_of"]),
                                     dt.date.fromisoformat(params["label_as_of"]))
    return {"seconds": time.perf_counter() - started, **rows}


@task
def s3_download(params: dict) -> dict:
    """GET every landed object (sequentially, boto3): the transfer part of ingest."""
    from churn_platform.dev.s3 import s3_client
    from churn_platform.settings import Settings

    settings = Settings.from_env()
    client = s3_client(settings.s3_endpoint_url, local=settings.local_s3_credentials)
    started = time.perf_counter()
    size = files = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.landing_bucket):
        for obj in page.get("Contents", []):
            size += len(client.get_object(Bucket=settings.landing_bucket, Key=obj["Key"])["Body"].read())
            files += 1
    return {"seconds": time.perf_counter() - started, "files": files, "bytes": size}


@task
def estimators(params: dict) -> dict:
    """The platform's default estimator vs the baseline GBC300 on the platform's training set.

    Both on the platform's split (train(), fits repeated), and once more on the baseline's split
    (sklearn train_test_split) to show how much of an AUC difference a split alone makes.
    """
    from bench.baseline_pandas import fit_on_baseline_split
    from churn_platform.assets.model import load_training_set
    from churn_platform.ml.training import build_estimator, baseline_estimator, train
    from churn_platform.resources.warehouse import DuckDBWarehouse
    from churn_platform.settings import Settings

    warehouse = DuckDBWarehouse(path=str(Settings.from_env().warehouse_path))
    data = load_training_set(warehouse, dt.date.fromisoformat(params["label_as_of"]))
    started = time.perf_counter()
    result = {"rows": len(data)}
    for name, make in (("hgb", build_estimator), ("gbc300", baseline_estimator)):
        runs = [train(data, estimator=make()) for _ in range(params["repeats"])]
        result[f"{name}_fit_seconds"] = statistics.median(r.fit_seconds for r in runs)
        result[f"{name}_fit_seconds_all"] = [r.fit_seconds for r in runs]
        result[f"{name}_auc"] = runs[0].metrics["roc_auc"]
        result[f"{name}_seed_split_auc"] = fit_on_baseline_split(data, make())[1]
    return {"seconds": time.perf_counter() - started, **result}


@task
def baseline_pandas(params: dict) -> dict:
    """The seed's pandas path on the landed files (see bench.baseline_pandas)."""
    from bench import baseline_pandas as baseline

    paths = sorted(Path(params["root"]).glob("events/raw/*/*.parquet"))
    return baseline.run(paths, dt.date.fromisoformat(params["label_as_of"]), Path(params["training_set"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.worker")
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("params", type=json.loads)
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the task here")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    details = TASKS[args.task](args.params)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    args.out.write_text(json.dumps({"details": details, "self_rss_mb": _vm_hwm_mb()}, default=str))


if __name__ == "__main__":
    main()
