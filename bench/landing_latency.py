"""`python -m bench.landing_latency` (`make bench-latency`): seconds from a file landing in S3
to its `raw_events` partition materialized, through a real `dagster dev`, in both modes.

For each mode (event: the bucket's notifications through SQS; listing: no queue) it starts
`dagster dev` over a few seeded days on the loopback S3 server, with the shipped sensor
interval (30 s unless --interval), waits for the first ingest, then lands the newest day's file
and re-lands it corrected (`--samples` versions in all, one at a time: each a new ETag, so a new
run that replaces the day) and times each: to the run's creation (the sensor's pickup) and to
the partition's new materialization (the run's own work added). Prints one line per sample and
the medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import pyarrow as pa
import pyarrow.parquet as pq

from churn_platform.dev.generator import parquet_bytes, part_key
from churn_platform.dev.instance import install_instance_config, stack_env, stop_process_group
from churn_platform.dev.landing import land_demo_events
from churn_platform.dev.local_s3 import local_s3_server
from churn_platform.dev.s3 import ensure_landing_queue, s3_client
from churn_platform.settings import PROJECT_ROOT, Settings

SEEDED_DAYS, USERS = 3, 2000
TIMEOUT = 600
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
RUNS = """query($day: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $day}]}) {
  ... on Runs { results { runId status creationTime tags { key value } } } } }"""
MATERIALIZATIONS = """query($day: String!) { assetOrError(assetKey: {path: ["raw_events"]}) {
  ... on Asset { assetMaterializations(partitions: [$day]) { timestamp runId } } } }"""
ACTIVE = "{ runsOrError(filter: {statuses: [QUEUED, STARTING, STARTED]}) { ... on Runs { results { runId } } } }"


def _graphql(url: str, query: str, **variables) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def _wait(what: str, probe, proc: subprocess.Popen, interval: float = 0.5):
    deadline = time.monotonic() + TIMEOUT
    while not (found := probe()):
        if proc.poll() is not None:
            sys.exit(f"dagster dev exited with {proc.returncode} before {what}")
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not within {TIMEOUT} s")
        time.sleep(interval)
    return found


def _loaded(url: str) -> bool:
    try:
        entries = _graphql(url, WORKSPACE)["workspaceOrError"].get("locationEntries") or []
    except requests.RequestException:
        return False
    return bool(entries) and entries[0]["loadStatus"] == "LOADED"


def _idle(url: str) -> bool:
    return not _graphql(url, ACTIVE)["runsOrError"]["results"]


def _materialized_after(url: str, day: str, landed: float) -> float | None:
    events = _graphql(url, MATERIALIZATIONS, day=day)["assetOrError"].get("assetMaterializations") or []
    newer = [int(e["timestamp"]) / 1000 for e in events if int(e["timestamp"]) / 1000 > landed]
    return min(newer) if newer else None


def _sensor_run_created_after(url: str, day: str, landed: float) -> float | None:
    runs = _graphql(url, RUNS, day=day)["runsOrError"]["results"]
    created = [r["creationTime"] for r in runs if r["creationTime"] > landed
               and any(t["key"] == "dagster/sensor_name" for t in r["tags"])]
    return min(created) if created else None


def measure_mode(root: Path, mode: str, samples: int, interval: int, port: int) -> list[tuple[float, float]]:
    """(seconds to the sensor's run, seconds to the materialization) for each landed file."""
    last_day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    first_day = last_day - dt.timedelta(days=SEEDED_DAYS - 1)
    with local_s3_server(port=0) as endpoint:
        bucket = f"latency-{uuid.uuid4().hex[:8]}"
        env = {"CHURN_ENV": "local", "CHURN_DATA_DIR": str(root / mode / "data"),
               "DAGSTER_HOME": str(root / mode / "dagster_home"), "AWS_ENDPOINT_URL_S3": endpoint,
               "CHURN_LANDING_BUCKET": bucket, "CHURN_START_DATE": first_day.isoformat(),
               "CHURN_LANDING_SENSOR_INTERVAL_SECONDS": str(interval)}
        queue_url = ensure_landing_queue(endpoint, bucket, name=bucket) if mode == "event" else None
        settings = Settings.from_env(env)
        install_instance_config(settings)
        land_demo_events(settings, users=USERS, days=SEEDED_DAYS, end_date=last_day, random_seed=7)
        s3 = s3_client(endpoint)
        newest = pq.read_table(pa.BufferReader(s3.get_object(Bucket=bucket, Key=part_key(last_day))["Body"].read()))
        s3.delete_object(Bucket=bucket, Key=part_key(last_day))
        url = f"http://127.0.0.1:{port}"
        log = (root / f"{mode}.log").open("wb")
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-m", "churn_platform.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            env={**stack_env(settings, endpoint, queue_url=queue_url), **env}, cwd=PROJECT_ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait("the code location", lambda: _loaded(url), proc)
            _wait("the first ingest", lambda: _materialized_after(url, first_day.isoformat(), 0), proc)
            _wait("an idle instance", lambda: _idle(url), proc)
            day, figures = last_day.isoformat(), []
            for sample in range(samples):
                body = parquet_bytes(newest.slice(0, newest.num_rows - sample))  # a corrected re-land
                landed = time.time()
                s3.put_object(Bucket=bucket, Key=part_key(last_day), Body=body)
                done = _wait(f"{mode} sample {sample}", lambda: _materialized_after(url, day, landed), proc, 0.2)
                created = _sensor_run_created_after(url, day, landed)
                figures.append((created - landed, done - landed))
                print(f"  {mode:7s} file {sample + 1}: run created after {created - landed:5.1f} s, "
                      f"partition materialized after {done - landed:5.1f} s", flush=True)
                _wait("an idle instance", lambda: _idle(url), proc)
            return figures
        finally:
            stop_process_group(proc)
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.landing_latency", description=__doc__)
    parser.add_argument("--samples", type=int, default=5, help="files landed per mode (default %(default)s)")
    parser.add_argument("--interval", type=int, default=30, help="landing sensor interval, s (default %(default)s)")
    parser.add_argument("--port", type=int, default=3077)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="churn-bench-latency-"))
    print(f"landing -> raw_events materialized, dagster dev, sensor interval {args.interval} s, "
          f"{os.cpu_count()} cores (logs in {root})")
    results = {mode: measure_mode(root, mode, args.samples, args.interval, args.port) for mode in ("event", "listing")}
    for mode, figures in results.items():
        print(f"{mode:7s}: median {statistics.median(f[0] for f in figures):5.1f} s to the run, "
              f"{statistics.median(f[1] for f in figures):5.1f} s to materialized "
              f"(max {max(f[1] for f in figures):.1f} s, {len(figures)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
