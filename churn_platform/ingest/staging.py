"""The staging area: where the orchestrator hands files to Spark jobs.

Spark reads staged days, not the landing bucket: the local Spark has no S3 connector (README,
"The Spark engine"), and a day's files are validated and conformed here by the same code as
the DuckDB ingest (`validation.py`), so a bad file fails its day the same way on both engines.
Locally the area is a folder under CHURN_DATA_DIR/spark; for a cluster, an `s3://` prefix the
cluster reads (CHURN_SPARK_STAGING_URI). Timestamps are written in microseconds: Spark 3.5
cannot read parquet nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq

from churn_platform.ingest.validation import LandedDay, LandedFile


def day_table(day: dt.date, files: list[LandedFile]) -> bytes:
    """The day's conformed rows as one parquet file, with their landed day (LANDED_DAY)."""
    sink = io.BytesIO()
    pq.write_table(LandedDay(day, files).table(), sink, coerce_timestamps="us")
    return sink.getvalue()


class StagingArea:
    """One run's folder in the staging area: put files, hand the URI to a job, clear it."""

    def __init__(self, root: str, run_id: str):
        self.uri = f"{root.rstrip('/')}/{run_id}"
        parsed = urlparse(self.uri)
        self._bucket, self._prefix = (parsed.netloc, parsed.path.lstrip("/")) if parsed.scheme == "s3" else ("", "")

    def _client(self):
        import boto3

        return boto3.client("s3")  # credentials and endpoint the usual way (AWS_* variables, role)

    def put(self, name: str, payload: bytes) -> str:
        """Store `payload` as `name`; returns its URI."""
        if self._bucket:
            self._client().put_object(Bucket=self._bucket, Key=f"{self._prefix}/{name}", Body=payload)
        else:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
            (Path(self.uri) / name).write_bytes(payload)
        return f"{self.uri}/{name}"

    def clear(self) -> None:
        if not self._bucket:
            shutil.rmtree(self.uri, ignore_errors=True)
            return
        client = self._client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix + "/"):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=self._bucket, Delete={"Objects": keys})
