"""Staging for the Spark ingest: a day's landed files, conformed, as one parquet file.

Spark reads the staging area, not the landing bucket: the local Spark has no S3 connector
(README, "Spark"). The files are validated and conformed here, by the same code as the DuckDB
ingest (`validation.py`), so a bad file fails its day the same way on both engines.
Timestamps are written in microseconds: Spark 3.5 cannot read parquet nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from churn_platform.ingest.validation import LandedFile
from churn_platform.spark.ingest_job import STAGED_DAY


def stage_day(staging_dir: Path, day: dt.date, files: list[LandedFile]) -> int:
    """Write the day's rows under staging_dir; returns the rows staged."""
    table = pa.concat_tables([f.table for f in files])
    table = table.append_column(STAGED_DAY, pa.repeat(pa.scalar(day, pa.date32()), table.num_rows))
    staging_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, staging_dir / f"{day.isoformat()}.parquet", coerce_timestamps="us")
    return table.num_rows


def clear(staging_dir: Path) -> None:
    shutil.rmtree(staging_dir, ignore_errors=True)
