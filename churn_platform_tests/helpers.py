"""Helpers shared by the tests (test modules import from here, never from each other)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from churn_platform.definitions import build_definitions
from churn_platform.events import LANDED_SCHEMA
from churn_platform.ml.model_card import DECISION_HEADING
from churn_platform.ml.params import TrainingParams
from churn_platform.settings import PROJECT_ROOT, Settings

# A small but realistic landed history, ingested once per session and copied per test.
DEMO_END = dt.date(2024, 5, 26)  # a Sunday: the as-of date of weekly partition 2024-05-20
DEMO_DAYS = 147
DEMO_USERS = 12000
DEMO_GATES = {"CHURN_GATE_MIN_TRAINING_ROWS": "1000"}
# Weekly partitions of the demo history: K trains on the features of K-4.
K = "2024-05-20"  # as-of 2024-05-26; labels of as-of 2024-04-28
K_MINUS_4 = "2024-04-22"


def demo_env(data_dir, endpoint: str, bucket: str, **extra) -> dict[str, str]:
    return {
        "CHURN_DATA_DIR": str(data_dir),
        "AWS_ENDPOINT_URL_S3": endpoint,
        "CHURN_LANDING_BUCKET": bucket,
        "CHURN_START_DATE": (DEMO_END - dt.timedelta(days=DEMO_DAYS - 1)).isoformat(),
        **DEMO_GATES,
        **extra,
    }


def event_table(day: dt.date, n: int, start_id: int = 0, **overrides) -> pa.Table:
    """n valid contract rows on `day` (logins, sessions and payments in turn)."""
    types = ["login", "session", "payment"]
    rows = {
        "event_id": [f"e{start_id + i}" for i in range(n)],
        "user_id": [i % 7 for i in range(n)],
        "event_type": [types[i % 3] for i in range(n)],
        "event_ts": [dt.datetime.combine(day, dt.time(12), dt.timezone.utc)] * n,
        "plan_tier": ["basic"] * n,
        "session_seconds": [120.0 if types[i % 3] == "session" else None for i in range(n)],
        "payment_status": ["failed" if types[i % 3] == "payment" else None for i in range(n)],
    }
    rows.update(overrides)
    schema = pa.schema([pa.field(f.name, f.type) for f in LANDED_SCHEMA])  # all nullable: tests send nulls
    return pa.table(rows, schema=schema)


def put_table(s3, bucket: str, key: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())


def materialize(settings: Settings, assets: list[str], partition: str, instance=None, checks=True):
    """Materialize `assets` (with their checks unless checks=False) for one partition, in process."""
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = {dg.AssetKey(a) for a in assets}
    if checks:
        job = job.get_subset(asset_selection=keys)
    else:
        job = job.get_subset(asset_selection=keys, asset_check_selection=set())
    return job.execute_in_process(
        partition_key=partition, instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def query(settings: Settings, sql: str, params=None):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


_HOLDER = """
import sys, time, duckdb
from churn_platform.warehouse_lock import acquire_lock
path, how, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
with acquire_lock(path, exclusive=how != "read", timeout_seconds=60):
    con = duckdb.connect(path, read_only=how == "read") if how != "lock" else None
    print("held", flush=True)
    time.sleep(seconds)
    if con is not None:
        con.close()
print("released", time.time(), flush=True)
"""


@contextmanager
def warehouse_held(path, how: str, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holding the warehouse for `seconds` as DuckDBWarehouse.connect does (the
    lock, then the DuckDB file) to "write" or "read", or the write "lock" alone; then it prints
    `released <time.time()>`. Killed at the end.
    (The resource itself would import all of Dagster: seconds per process.)"""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), how, str(seconds)],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def failure_message(result, step: str) -> str:
    return result.failure_data_for_node(step).error.message


# MLflow on a temporary sqlite store (ml/ and resources/ tests). mlflow and sklearn are
# imported inside the helpers: every test session imports this module.
FAST_TRAINING_PARAMS = TrainingParams(max_iter=30)  # small models keep the suite fast
WEAK_TRAINING_PARAMS = TrainingParams(max_iter=3, max_leaf_nodes=2)
MLFLOW_PARTITION_KEY = "2024-02-05"


def migrate_mlflow_store(path: Path) -> Path:
    """An empty MLflow sqlite store at path: migrations take ~2 s per new file, so copy it."""
    from churn_platform.ml.mlflow_io import connect

    connect(f"sqlite:///{path}").search_experiments()
    return path


def fast_mlflow_retry():
    """Retries with millisecond waits, so retry tests take no time."""
    from churn_platform.ml.mlflow_io import MlflowRetry

    return MlflowRetry(attempts=3, base_delay_seconds=0.01, max_delay_seconds=0.02)


def register_training(client, artifact_root, trained, partition_key: str = MLFLOW_PARTITION_KEY, evaluation=None):
    """log_and_register as churn_model calls it (with its holdout evaluation), with fast retries."""
    from churn_platform.ml.registration import log_and_register

    return log_and_register(
        client,
        trained,
        artifact_root=artifact_root,
        partition_key=partition_key,
        dagster_run_id=f"dagster-run-{partition_key}",
        data_window="as_of 2024-01-07, labels (2024-01-07, 2024-02-04]",
        evaluation=evaluation or holdout_evaluation(trained),
        model_card=lambda version: f"# churn_prediction v{version}\n\n{DECISION_HEADING}\nNot decided yet.\n",
        retry=fast_mlflow_retry(),
    )


_evaluations: dict[int, object] = {}


def holdout_evaluation(trained):
    """The holdout evaluation of a trained model, computed once per model object."""
    from churn_platform.ml.holdout_evaluation import evaluate_holdout

    if id(trained.model) not in _evaluations:
        _evaluations[id(trained.model)] = evaluate_holdout(trained.model, trained.holdout)
    return _evaluations[id(trained.model)]


# Crash tests: a run worker in a child process, SIGKILLed at a chosen moment.
# The child runs the real definitions built from Settings on a persistent instance
# (DAGSTER_HOME), like a run worker; the test watches what the child does (its log, its
# file locks, the MLflow store, dbt's log) and kills the child's whole process group,
# which includes any dbt subprocess.

REPO_ROOT = Path(__file__).resolve().parents[1]
_RUN_WORKER_MAIN = "import sys; from churn_platform_tests.helpers import run_worker_main; run_worker_main(sys.argv[1])"


def execute_assets(
    settings: Settings,
    assets: list[str],
    instance: dg.DagsterInstance,
    *,
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    run_config: dict | None = None,
    checks: bool = True,
):
    """Materialize `assets` (with their checks unless checks=False) for one partition or one
    range (a single run), in this process."""
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    keys = {dg.AssetKey(a) for a in assets}
    job = job.get_subset(asset_selection=keys) if checks else job.get_subset(
        asset_selection=keys, asset_check_selection=set()
    )
    tags = {}
    if partition_range is not None:
        tags = {"dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1]}
    return job.execute_in_process(
        partition_key=partition, tags=tags, instance=instance, run_config=run_config or {}, raise_on_error=False
    )


def instance_at(dagster_home: Path) -> dg.DagsterInstance:
    """The persistent instance a run worker with DAGSTER_HOME=dagster_home uses; without a
    dagster.yaml of its own it gets one that turns telemetry off (Dagster's default is on)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(dagster_home))


def report_materialization_at(instance: dg.DagsterInstance, asset: str, partition: str, timestamp: float) -> None:
    """Record a materialization of `asset` as if it had been reported at `timestamp` (epoch
    seconds): how the event log looks after days without a run, without waiting for days."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    event = DagsterEvent(DagsterEventType.ASSET_MATERIALIZATION.value, job_name=RUNLESS_JOB_NAME,
                         event_specific_data=StepMaterializationData(dg.AssetMaterialization(asset, partition=partition)))
    instance.report_dagster_event(event, run_id=RUNLESS_RUN_ID, timestamp=timestamp)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a run worker for `settings` (the names Settings.from_env reads);
    creates its DAGSTER_HOME."""
    import dataclasses
    import os

    from churn_platform.gate_thresholds import ENV_PREFIX

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        CHURN_DATA_DIR=str(settings.data_dir),
        DAGSTER_HOME=str(settings.dagster_home),
        CHURN_LANDING_BUCKET=settings.landing_bucket,
        AWS_ENDPOINT_URL_S3=settings.s3_endpoint_url or "",
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        CHURN_START_DATE=settings.start_date.isoformat(),
        PYTHONUNBUFFERED="1",
        **{ENV_PREFIX + name.upper(): str(value)
           for name, value in dataclasses.asdict(settings.gate_thresholds).items()},
    )
    env.update(extra)
    return env


def run_worker_main(spec_json: str) -> None:
    """Child side of RunWorker: execute the spec's assets on the instance at DAGSTER_HOME.

    `sigkill_before_mlflow_run_finishes` makes the process SIGKILL itself at the one moment
    too short to hit from outside: the model version is registered, its MLflow run is about
    to be marked FINISHED.
    """
    import json
    import os
    import signal
    import sys

    spec = json.loads(spec_json)
    if spec.pop("sigkill_before_mlflow_run_finishes", False):
        from mlflow import MlflowClient

        set_terminated = MlflowClient.set_terminated

        def die_before_finishing(self, run_id, status=None, end_time=None):
            if status == "FINISHED":
                print(f"SIGKILL before MLflow run {run_id} is FINISHED", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return set_terminated(self, run_id, status, end_time)

        MlflowClient.set_terminated = die_before_finishing
    if spec.get("partition_range"):
        spec["partition_range"] = tuple(spec["partition_range"])
    with dg.DagsterInstance.get() as instance:
        result = execute_assets(Settings.from_env(), instance=instance, **spec)
    print(f"run worker finished: success={result.success}", flush=True)
    sys.exit(0 if result.success else 1)


class RunWorker:
    """`execute_assets` in a child process of its own session, watched and then SIGKILLed."""

    def __init__(self, env: dict[str, str], assets: list[str], **spec):
        import json
        import queue
        import subprocess
        import sys
        import threading

        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_WORKER_MAIN, json.dumps({"assets": assets, **spec})],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _fail(self, what: str) -> None:
        self.kill()
        raise AssertionError(f"{what}; run worker output:\n{self.output[-6000:]}")

    def wait_for_line(self, pattern: str, timeout: float = 180):
        """Block until the child prints a line matching `pattern` (re.search); the match."""
        import queue
        import re
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._fail(f"no line matching {pattern!r} within {timeout} s")
            if line is None:
                self._fail(f"the run worker exited (code {self.proc.wait()}) before a line matching {pattern!r}")
            if match := re.search(pattern, line):
                return match

    def wait_until(self, condition, what: str, timeout: float = 180, interval: float = 0.005):
        """Poll `condition()` until it returns something truthy; that value."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := condition():
                return value
            if self.proc.poll() is not None:
                if value := condition():
                    return value
                self._fail(f"the run worker exited (code {self.proc.returncode}) before {what}")
            time.sleep(interval)
        self._fail(f"no {what} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the child's whole process group and wait until every member is gone."""
        import os
        import signal
        import time

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.monotonic() + 30
        while _group_alive(self.proc.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"process group {self.proc.pid} still alive 30 s after SIGKILL")
            time.sleep(0.01)
        self._reader.join(timeout=10)

    def wait(self, timeout: float = 300) -> int:
        """Wait for the child to end by itself; its exit code (negative: killed by a signal)."""
        import subprocess

        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._fail(f"the run worker still runs after {timeout} s")
        self._reader.join(timeout=10)
        return code


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group pgid."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def holds_write_lock(pid: int, path: Path) -> bool:
    """Whether process `pid` holds a POSIX write lock on `path` (DuckDB's lock of a writer)."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 22670 fe:00:2146360 0 EOF"
        if len(fields) >= 6 and fields[3] == "WRITE" and fields[4] == str(pid) \
                and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def partition_fingerprints(settings: Settings, table: str, key: str, where: str = "TRUE", params=None) -> dict:
    """{key value: (rows, sum of row hashes)} of `table`: equal fingerprints, equal rows."""
    rows = query(
        settings, f"SELECT {key}, count(*), sum(hash(t)) FROM {table} t WHERE {where} GROUP BY {key}", params
    )
    return {k: (n, int(h)) for k, n, h in rows}


def install_project_instance_config(dagster_home: Path, **run_monitoring: int) -> dict:
    """The project's dagster.yaml (pools of one slot, run monitoring) in dagster_home, with
    `run_monitoring` keys overridden (shorter waits for tests); the project's own settings."""
    import yaml

    from churn_platform.dev.instance import INSTANCE_CONFIG

    project = yaml.safe_load(INSTANCE_CONFIG.read_text())
    config = {**project, "run_monitoring": {**project["run_monitoring"], **run_monitoring}}
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return project


def recover_killed_run(instance: dg.DagsterInstance, run_id: str, timeout: float = 30) -> None:
    """What a deployment does after a run worker died: the code server that launched the run
    sees its process gone and marks the run failed; the daemon's run monitoring then frees the
    run's pool slots after `free_slots_after_run_end_seconds`."""
    import logging
    import time
    from types import SimpleNamespace

    from dagster._daemon.monitoring import execute_concurrency_slots_iteration

    instance.report_run_failed(instance.get_run_by_id(run_id))
    daemon = SimpleNamespace(instance=instance)
    deadline = time.monotonic() + timeout
    while run_id in instance.event_log_storage.get_concurrency_run_ids():
        if time.monotonic() > deadline:
            raise AssertionError(f"the pool slots of killed run {run_id} were not freed within {timeout} s")
        time.sleep(0.2)
        list(execute_concurrency_slots_iteration(daemon, logging.getLogger("run_monitoring")))


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
