"""`churn-platform`: local chores — seed demo data, land a file, run the local stack."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from churn_platform.dev.landing import DEMO_USERS
from churn_platform.dev.topology import Ports
from churn_platform.settings import DEFAULT_DATA_DIR, DEFAULT_DEMO_DAYS, Settings, default_demo_end_date
from churn_platform.telemetry import disable_telemetry


def rollback(settings: Settings):
    """Point `champion` back at the previous champion and record it (docs/contract.md §4)."""
    from churn_platform.resources import build_mlflow_registry

    return build_mlflow_registry(settings).process_config_and_initialize().rollback()


# Commands that create buckets, land synthetic data or install an instance config: never in prod.
LOCAL_ONLY = ("seed", "demo", "dev", "stack")


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

    p = sub.add_parser("stack", help="the production topology on loopback (what `make stack` runs)")
    p.add_argument("--root", type=Path, default=None, help="the stack's folder (default: .data/stack)")
    p.add_argument("--users", type=int, default=DEMO_USERS, help="demo users seeded into an empty bucket")
    p.add_argument("--days", type=int, default=DEFAULT_DEMO_DAYS, help="demo days seeded into an empty bucket")
    for name, default in vars(Ports()).items():
        p.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=default)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    disable_telemetry()
    settings = Settings.from_env()
    if args.command in LOCAL_ONLY and settings.environment != "local":
        print(f"churn-platform {args.command} refused: CHURN_ENV={settings.environment}. It is a local chore "
              "that creates buckets, lands synthetic data or rewrites the instance's dagster.yaml; "
              "unset CHURN_ENV (or set it to local) to run it against the local stack.", file=sys.stderr)
        return 2
    if args.command == "seed":
        from churn_platform.dev.landing import land_demo_events

        end = args.end_date or default_demo_end_date()
        started = time.monotonic()
        files, events = land_demo_events(
            settings, args.users, args.days, end, args.seed, args.files_per_day,
            progress=lambda line: print(f"[{time.monotonic() - started:6.1f} s] {line}", flush=True))
        print(f"landed {events} events in {files} files under s3://{settings.landing_bucket}/events/raw/ "
              f"({time.monotonic() - started:.1f} s)")
        return 0
    if args.command == "land":
        from churn_platform.dev.landing import land_file

        key = land_file(settings, args.file, args.date, args.name)
        print(f"landed s3://{settings.landing_bucket}/{key}")
        return 0
    if args.command == "rollback":
        print(rollback(settings).report)
        return 0
    if args.command == "demo":
        from churn_platform.dev.demo import DemoError, run_demo

        try:
            print(run_demo(args.users, args.days, args.end_date, args.seed).report())
        except DemoError as err:
            print(f"demo failed: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "dev":
        s3_port = args.s3_port or int(settings.s3_endpoint_url.rsplit(":", 1)[1])
        from churn_platform.dev.stack import run_dev

        return run_dev(settings, args.host, args.port, s3_port)
    if args.command == "stack":
        from churn_platform.dev.production_stack import StackError, run_stack

        ports = Ports(**{name: getattr(args, f"{name}_port") for name in vars(Ports())})
        try:
            return run_stack(args.root or DEFAULT_DATA_DIR / "stack", ports, args.users, args.days)
        except StackError as err:
            print(f"churn-platform stack: {err}", file=sys.stderr)
            return 1
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
