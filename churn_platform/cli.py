"""`churn-platform`: local chores — seed demo data, land a file, run the local stack."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from churn_platform.settings import (
    DEFAULT_DEMO_DAYS,
    PROJECT_ROOT,
    START_DATE_FILE,
    Settings,
    default_demo_end_date,
)
from churn_platform.telemetry import OFFLINE_ENV, disable_telemetry

DEMO_USERS = 20_000
TRAINING_POOL_LIMIT = 4  # the seed limited GPU training to 4 concurrent runs


def _client(settings: Settings):
    from churn_platform.local_stack import s3_client

    return s3_client(settings.s3_endpoint_url, local=settings.local_s3_credentials)


def seed(settings: Settings, users: int, days: int, end_date: dt.date, seed_value: int,
         files_per_day: int = 1) -> tuple[int, int]:
    """Generate demo events and upload them in the landing layout; returns (files, events)."""
    from churn_platform.generator import GeneratorConfig, iter_daily_events, parquet_bytes
    from churn_platform.local_stack import ensure_bucket

    client = _client(settings)
    ensure_bucket(client, settings.landing_bucket)
    config = GeneratorConfig(users=users, days=days, end_date=end_date, seed=seed_value)
    files = events = 0
    for day, table in iter_daily_events(config):
        rows_per_file = -(-table.num_rows // files_per_day)
        for part in range(files_per_day):
            chunk = table.slice(part * rows_per_file, rows_per_file)
            key = f"events/raw/date={day.isoformat()}/part-{part:03d}.parquet"
            client.put_object(Bucket=settings.landing_bucket, Key=key, Body=parquet_bytes(chunk))
            files += 1
        events += table.num_rows
    start = end_date - dt.timedelta(days=days - 1)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / START_DATE_FILE).write_text(start.isoformat())
    return files, events


def land(settings: Settings, path: Path, day: dt.date, name: str | None = None) -> str:
    """Upload one local parquet file as events/raw/date=<day>/<name>; returns the key."""
    key = f"events/raw/date={day.isoformat()}/{name or path.name}"
    _client(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=path.read_bytes())
    return key


def rollback(settings: Settings):
    """Point `champion` back at the previous champion and record it (DESIGN.md §4)."""
    from churn_platform.ml.registry import connect
    from churn_platform.ml.registry import rollback as rollback_champion

    return rollback_champion(connect(settings.mlflow_tracking_uri))


def install_instance_config(settings: Settings) -> None:
    """Copy the project's dagster.yaml into DAGSTER_HOME (telemetry off, pools, run monitoring)."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", settings.dagster_home / "dagster.yaml")


def configure_pools(settings: Settings) -> None:
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    with DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("training", TRAINING_POOL_LIMIT)


def stack_env(settings: Settings, endpoint: str) -> dict[str, str]:
    """Environment for every process of the local stack: same names as production."""
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env.update(
        DAGSTER_HOME=str(settings.dagster_home),
        CHURN_DATA_DIR=str(settings.data_dir),
        CHURN_LANDING_BUCKET=settings.landing_bucket,
        AWS_ENDPOINT_URL_S3=endpoint,
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def stop_process_group(proc: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGINT the whole group (dagster's graceful stop), SIGKILL what is left after the grace."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def dev(settings: Settings, host: str, port: int, s3_port: int) -> int:
    """Local S3 (restored from disk, seeded if empty) + `dagster dev`; Ctrl-C stops everything."""
    from churn_platform.local_stack import (
        PeriodicSync,
        S3Mirror,
        bucket_is_empty,
        ensure_bucket,
        local_s3_server,
        s3_client,
    )

    install_instance_config(settings)
    with local_s3_server(port=s3_port) as endpoint:
        settings = settings.with_overrides(s3_endpoint_url=endpoint, local_s3_credentials=True)
        client = s3_client(endpoint)
        ensure_bucket(client, settings.landing_bucket)
        mirror = S3Mirror(client, settings.landing_bucket, settings.data_dir / "s3")
        restored = mirror.restore()
        print(f"local S3 at {endpoint}: restored {restored} object(s) into s3://{settings.landing_bucket}")
        if bucket_is_empty(client, settings.landing_bucket):
            end = default_demo_end_date()
            print(f"seeding demo data: {DEMO_USERS} users, {DEFAULT_DEMO_DAYS} days ending {end} ...")
            files, events = seed(settings, DEMO_USERS, DEFAULT_DEMO_DAYS, end, 42)
            print(f"seeded {events} events in {files} files")
            mirror.sync()
        settings = Settings.from_env(stack_env(settings, endpoint))  # start date from the seed
        configure_pools(settings)
        syncer = PeriodicSync(mirror, on_error=lambda msg: print(msg, file=sys.stderr))
        syncer.start()
        command = [
            str(Path(sys.executable).parent / "dagster"), "dev", "-m", "churn_platform",
            "-h", host, "-p", str(port),
        ]
        proc = subprocess.Popen(command, env=stack_env(settings, endpoint), cwd=PROJECT_ROOT,
                                start_new_session=True)
        print(f"Dagster UI: http://{host}:{port}  (Ctrl-C stops everything)")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            print("stopping dagster dev ...")
            return 0
        finally:
            stop_process_group(proc)
            syncer.stop()
            mirror.sync()
            if mirror.skipped:
                print(f"not mirrored to disk (not file-safe keys): {sorted(mirror.skipped)}")


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="churn-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("seed", help="generate demo events into the landing bucket")
    p.add_argument("--users", type=int, default=DEMO_USERS)
    p.add_argument("--days", type=int, default=DEFAULT_DEMO_DAYS)
    p.add_argument("--end-date", type=_date, default=None, help="last day (default: yesterday UTC)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--files-per-day", type=int, default=1)

    p = sub.add_parser("land", help="upload one parquet file into the landing layout")
    p.add_argument("file", type=Path)
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--name", default=None, help="object name (default: the file's name)")

    sub.add_parser("rollback", help="point the MLflow alias `champion` back to the previous champion")

    p = sub.add_parser("demo", help="headless end to end through Dagster (what `make demo` runs)")
    p.add_argument("--users", type=int, default=DEMO_USERS)
    p.add_argument("--days", type=int, default=DEFAULT_DEMO_DAYS)
    p.add_argument("--end-date", type=_date, default=None, help="last day (default: yesterday UTC)")
    p.add_argument("--seed", type=int, default=42)

    p = sub.add_parser("dev", help="local S3 + dagster dev (what `make dev` runs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--s3-port", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    disable_telemetry()
    settings = Settings.from_env()
    if args.command == "seed":
        end = args.end_date or default_demo_end_date()
        started = time.monotonic()
        files, events = seed(settings, args.users, args.days, end, args.seed, args.files_per_day)
        print(f"landed {events} events in {files} files under s3://{settings.landing_bucket}/events/raw/ "
              f"({time.monotonic() - started:.1f} s)")
        return 0
    if args.command == "land":
        key = land(settings, args.file, args.date, args.name)
        print(f"landed s3://{settings.landing_bucket}/{key}")
        return 0
    if args.command == "rollback":
        print(rollback(settings).report)
        return 0
    if args.command == "demo":
        from churn_platform.demo import DemoError, run_demo

        try:
            print(run_demo(args.users, args.days, args.end_date, args.seed).report())
        except DemoError as err:
            print(f"demo failed: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "dev":
        s3_port = args.s3_port or int(settings.s3_endpoint_url.rsplit(":", 1)[1])
        return dev(settings, args.host, args.port, s3_port)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
