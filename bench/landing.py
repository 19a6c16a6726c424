"""Generate a scale's events once and land the same parquet bytes in S3 and on local disk."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from churn_platform.dev.generator import iter_daily_events, parquet_bytes, part_key
from churn_platform.dev.s3 import ensure_bucket

from bench.scales import Scale


@dataclass(frozen=True)
class LandedData:
    """What was landed: the local copy (for the floors and pandas) mirrors the bucket."""

    root: Path  # local folder holding events/raw/date=.../part-000.parquet
    files: int
    events: int
    bytes: int
    generate_seconds: float  # generator + parquet serialization
    land_seconds: float  # S3 puts and local writes

    @property
    def glob(self) -> str:
        return str(self.root / "events" / "raw" / "*" / "*.parquet")

    def paths(self) -> list[Path]:
        return sorted(self.root.glob("events/raw/*/*.parquet"))


def land(scale: Scale, client, bucket: str, root: Path) -> LandedData:
    """One file per day, uploaded to s3://bucket and written under root."""
    ensure_bucket(client, bucket)
    files = events = size = 0
    generate = put = 0.0
    started = time.perf_counter()
    for day, table in iter_daily_events(scale.generator_config):
        body = parquet_bytes(table)
        generated = time.perf_counter()
        generate += generated - started
        key = part_key(day)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        started = time.perf_counter()
        put += started - generated
        files, events, size = files + 1, events + table.num_rows, size + len(body)
    return LandedData(root, files, events, size, generate, put)


def empty_bucket(client, bucket: str) -> None:
    """Free the server's memory once a scale is done."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
