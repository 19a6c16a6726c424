"""One scale end to end: land the data, run every measured task in fresh child processes, verify."""

from __future__ import annotations

import io
import os
import pstats
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from churn_platform.constants import CHURN_LABELS, CHURN_MODEL, CHURN_SCORES, PROMOTION_DECISION, USER_FEATURES
from churn_platform.dev.instance import install_instance_config, stack_env
from churn_platform.settings import DBT_PROJECT_DIR, Settings

from bench import verify
from bench.child import ChildFailed, Measurement, run_child
from bench.landing import LandedData, empty_bucket, land
from bench.scales import Scale

FEATURE_ASSETS = [USER_FEATURES, CHURN_LABELS]
MODEL_ASSETS = [CHURN_MODEL, PROMOTION_DECISION, CHURN_SCORES]
GIB = 1024**3


@dataclass
class ScaleResult:
    scale: Scale
    data: LandedData
    measurements: dict[str, Measurement] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # task name -> why it did not finish
    diffs: dict[str, dict[str, int]] = field(default_factory=dict)


def child_env(scale_dir: Path, endpoint: str, bucket: str, scale: Scale) -> dict[str, str]:
    """The local stack's environment (docs/contract.md §6), all state under scale_dir; no platform
    variable inherited from the caller's shell."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "DAGSTER_", "MLFLOW_", "DBT_"))}
    env = {"CHURN_DATA_DIR": str(scale_dir / "data"), "DAGSTER_HOME": str(scale_dir / "dagster_home"),
           "CHURN_LANDING_BUCKET": bucket, "CHURN_START_DATE": scale.start_date.isoformat()}
    return {
        **stack_env(Settings.from_env(env), endpoint, base=base),
        "CHURN_START_DATE": scale.start_date.isoformat(),
        # dagster-dbt writes each invocation's target folder here instead of in the checkout.
        "DBT_TARGET_PATH": str(scale_dir / "dbt_target"),
    }


def prepare(scale_dir: Path, env: dict[str, str]) -> None:
    """Instance config as `make dev` installs it, and dbt's partial parse file as `make` leaves it."""
    install_instance_config(Settings.from_env(env))
    (scale_dir / "dbt_target").mkdir()
    partial_parse = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
    if partial_parse.exists():
        shutil.copy(partial_parse, scale_dir / "dbt_target")


class ScaleBench:
    """Runs the tasks of one scale; each measurement is `repeats` fresh child processes."""

    def __init__(self, scale: Scale, scale_dir: Path, env: dict[str, str], repeats: int, profile: bool = False,
                 spark: bool = True, spark_only: bool = False, ingest_only: bool = False):
        self.scale = scale
        self.spark = spark or spark_only
        self.spark_only = spark_only
        self.ingest_only = ingest_only
        self.dir = scale_dir
        self.env = env
        self.repeats = repeats
        self.profile = profile
        self.warehouse = scale_dir / "data" / "warehouse.duckdb"

    def say(self, text: str) -> None:
        print(f"[{self.scale.name}] {text}", flush=True)

    def measure(self, result: ScaleResult, name: str, label: str, task: str, params: dict,
                repeats: int | None = None, before_each=None, memory_limit_bytes: int | None = None,
                profiled: bool = False, env: dict[str, str] | None = None) -> None:
        """Run a task `repeats` times; a failure is recorded and ends this measurement.

        With profiling on, a `profiled` task runs once more under cProfile (not measured).
        """
        runs = []
        total = repeats or self.repeats
        for i in range(total):
            if before_each:
                before_each()
            try:
                run = run_child(task, params, env or self.env, self.dir / "work" / name, memory_limit_bytes)
            except ChildFailed as err:
                self.say(f"{label}: FAILED\n{err}")
                lines = str(err).splitlines()
                result.failures[name] = f"{lines[0]} ... {lines[-1]}"
                return
            runs.append(run)
            sub = f" (subprocess {run.subprocess_rss_mb:,.0f} MB)" if run.subprocess_rss_mb >= 1 else ""
            self.say(f"{label} [{i + 1}/{total}]: {run.seconds:.2f} s measured, "
                     f"{run.process_seconds:.2f} s process, peak RSS {run.peak_rss_mb:,.0f} MB{sub}")
        result.measurements[name] = Measurement(runs)
        if self.profile and profiled:
            self._profile(name, label, task, params, before_each)

    def _profile(self, name: str, label: str, task: str, params: dict, before_each) -> None:
        """One more run under cProfile; stats and a text summary land in <scale dir>/profiles/."""
        if before_each:
            before_each()
        stats = self.dir / "profiles" / f"{name}.prof"
        stats.parent.mkdir(exist_ok=True)
        try:
            run_child(task, params, self.env, self.dir / "work" / name, profile=stats)
        except ChildFailed as err:
            self.say(f"{label}: profiled run FAILED\n{err}")
            return
        stats.with_suffix(".txt").write_text(profile_summary(stats))
        self.say(f"{label}: cProfile in {stats} (summary {stats.with_suffix('.txt')})")

    def fresh_warehouse(self) -> None:
        for path in self.warehouse.parent.glob(self.warehouse.name + "*"):
            path.unlink()

    def run(self, client, bucket: str, pandas_memory_gib: float, run_pandas: bool) -> ScaleResult:
        scale = self.scale
        self.say(f"generating {scale.users:,} users x {scale.days} days and landing them in s3://{bucket} ...")
        data = land(scale, client, bucket, self.dir / "landed")
        self.say(f"landed {data.events:,} events in {data.files} files ({data.bytes / 1e6:,.0f} MB): "
                 f"generation {data.generate_seconds:.1f} s, landing {data.land_seconds:.1f} s")
        try:
            return self._measure_all(ScaleResult(scale, data), pandas_memory_gib, run_pandas)
        finally:
            empty_bucket(client, bucket)

    def _measure_all(self, result: ScaleResult, pandas_memory_gib: float, run_pandas: bool) -> ScaleResult:
        scale, data = self.scale, result.data
        weeks = {"as_of": scale.as_of.isoformat(), "label_as_of": scale.label_as_of.isoformat()}
        floor_db = str(self.dir / "floor.duckdb")
        days = {"start": scale.start_date.isoformat(), "end": scale.as_of.isoformat()}
        if self.spark_only:
            self._measure_spark(result, days)
            return result

        self.measure(result, "noop", "Dagster no-op run", "noop",
                     {"first_week": scale.first_week, "partition": scale.week}, profiled=True)
        self.measure(result, "noop_range", f"Dagster no-op range run over {scale.days} days", "noop_range", days)
        self.measure(result, "ingest", f"platform ingest_job over {scale.days} days", "ingest", days,
                     before_each=self.fresh_warehouse, profiled=True)
        week_days = {"start": scale.week, "end": scale.as_of.isoformat()}
        self.measure(result, "ingest_week", f"platform ingest_job over K's 7 days {scale.week}..{scale.as_of}",
                     "ingest", week_days, profiled=True)
        self.measure(result, "s3_download", "S3 GET of every file", "s3_download", {})
        self.measure(result, "floor_ingest", "floor ingest (DuckDB read+write)", "floor_ingest",
                     {"glob": data.glob, "database": str(self.dir / "floor_ingest.duckdb")})
        if "ingest" in result.failures or self.ingest_only:
            return result
        self.measure(result, "features_prev", f"platform user_features {scale.training_week} (setup)",
                     "materialize", {"assets": ["user_features"], "partition": scale.training_week}, repeats=1)
        self.measure(result, "features", f"platform user_features+churn_labels {scale.week}", "materialize",
                     {"assets": FEATURE_ASSETS, "partition": scale.week}, profiled=True)
        self.measure(result, "floor_features", "floor features+labels (one DuckDB scan)", "floor_features",
                     {"glob": data.glob, "database": floor_db, **weeks})
        if self.spark:
            self._measure_spark(result, days)
        self.measure(result, "model", f"platform churn_model+promotion_decision+churn_scores {scale.week}",
                     "materialize", {"assets": MODEL_ASSETS, "partition": scale.week}, profiled=True)
        self.measure(result, "estimators", "HGB default vs GBC300 on the platform's training set",
                     "estimators", {"label_as_of": weeks["label_as_of"], "repeats": self.repeats}, repeats=1)
        training_set = self.dir / "pandas_training_set.parquet"
        if run_pandas:
            self.measure(result, "baseline_pandas", f"pandas + GradientBoosting baseline (address space cap {pandas_memory_gib:g} GiB)",
                         "baseline_pandas", {"root": str(data.root), "label_as_of": weeks["label_as_of"],
                                         "training_set": str(training_set)},
                         repeats=1, memory_limit_bytes=int(pandas_memory_gib * GIB))
        else:
            result.failures["baseline_pandas"] = "skipped (--no-pandas)"
        if "features" in result.measurements and "floor_features" in result.measurements:
            result.diffs = verify.compare(self.warehouse, Path(floor_db),
                                          training_set if training_set.exists() else None,
                                          scale.as_of, scale.label_as_of)
            self.say(f"same features and labels as the platform: {_diff_summary(result.diffs)}")
        return result


    def _measure_spark(self, result: ScaleResult, days: dict[str, str]) -> None:
        """The same ingest and weekly runs on the Spark engine (CHURN_ENGINE=spark), once each:
        Spark on two local cores is minutes, and what matters is the ratio to DuckDB."""
        scale = self.scale
        env = {**self.env, "CHURN_ENGINE": "spark", "CHURN_DATA_DIR": str(self.dir / "spark_data")}
        self.measure(result, "spark_ingest", f"Spark ingest_job over {scale.days} days", "ingest", days,
                     repeats=1, env=env)
        if "spark_ingest" in result.failures:
            return
        self.measure(result, "spark_features_prev", f"Spark user_features {scale.training_week} (setup)",
                     "materialize", {"assets": ["user_features"], "partition": scale.training_week},
                     repeats=1, env=env)
        self.measure(result, "spark_features", f"Spark user_features+churn_labels {scale.week}", "materialize",
                     {"assets": FEATURE_ASSETS, "partition": scale.week}, repeats=1, env=env)


def profile_summary(stats_path: Path, lines: int = 40) -> str:
    """The functions with the most cumulative and the most own time."""
    out = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=out)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines // 2)
    return out.getvalue()


def _diff_summary(diffs: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{name}: {verify.mismatches(d)} differing rows of {d['platform_rows']:,}"
                     for name, d in diffs.items())
