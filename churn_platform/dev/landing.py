"""Putting files into the landing zone: generated demo events, or one parquet file of yours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from churn_platform.dev.s3 import client_for, ensure_bucket
from churn_platform.events import landing_key
from churn_platform.settings import START_DATE_FILE, Settings

DEMO_USERS = 20_000


def land_demo_events(settings: Settings, users: int, days: int, end_date: dt.date, random_seed: int,
                     files_per_day: int = 1, progress: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Generate demo events and upload them in the landing layout; returns (files, events).

    Records the first day in CHURN_DATA_DIR so the partitions start there. `progress` gets a
    line about every tenth of the days (scale L takes minutes).
    """
    from churn_platform.dev.generator import GeneratorConfig, iter_daily_events, parquet_bytes, part_key

    client = client_for(settings)
    ensure_bucket(client, settings.landing_bucket)
    config = GeneratorConfig(users=users, days=days, end_date=end_date, seed=random_seed)
    files = events = 0
    report_every = max(1, days // 10)
    for done, (day, table) in enumerate(iter_daily_events(config), start=1):
        rows_per_file = -(-table.num_rows // files_per_day)
        for part in range(files_per_day):
            chunk = table.slice(part * rows_per_file, rows_per_file)
            key = part_key(day, part)
            client.put_object(Bucket=settings.landing_bucket, Key=key, Body=parquet_bytes(chunk))
            files += 1
        events += table.num_rows
        if progress and (done % report_every == 0 or done == days):
            progress(f"landed {done}/{days} days (through {day}): {events:,} events in {files} files")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / START_DATE_FILE).write_text(config.start_date.isoformat())
    return files, events


def land_file(settings: Settings, path: Path, day: dt.date, name: str | None = None) -> str:
    """Upload one local parquet file as events/raw/date=<day>/<name>; returns the key."""
    key = landing_key(day, name or path.name)
    client_for(settings).put_object(Bucket=settings.landing_bucket, Key=key, Body=path.read_bytes())
    return key
