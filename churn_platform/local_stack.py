"""The local S3: moto's server on loopback, mirrored to disk so landed files survive restarts.

moto keeps objects in memory only. `S3Mirror` restores the bucket from
`$CHURN_DATA_DIR/s3/<bucket>/` on start and copies new or changed objects back to disk
every few seconds and at shutdown.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from churn_platform.settings import LOCAL_S3_CREDENTIAL


def s3_client(endpoint_url: str | None, local: bool = True):
    """A boto3 client; for the loopback server, with its throwaway credentials."""
    if not local:
        return boto3.client("s3", endpoint_url=endpoint_url)
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=LOCAL_S3_CREDENTIAL,
        aws_secret_access_key=LOCAL_S3_CREDENTIAL,
    )


@contextmanager
def local_s3_server(port: int = 0) -> Iterator[str]:
    """Run moto's S3 HTTP server on 127.0.0.1; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the console
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.stop()


def ensure_bucket(client, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def bucket_is_empty(client, bucket: str) -> bool:
    return client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0) == 0


class S3Mirror:
    """Copies one bucket to a folder and back, by ETag, so restarts lose nothing."""

    def __init__(self, client, bucket: str, root: Path):
        self.client = client
        self.bucket = bucket
        self.root = root / bucket
        self.index_path = root / f"{bucket}.index.json"
        self._lock = threading.Lock()
        self.skipped: set[str] = set()  # keys not mirrored (reported by the caller)

    def _index(self) -> dict[str, str]:
        return json.loads(self.index_path.read_text()) if self.index_path.exists() else {}

    def restore(self) -> int:
        """Upload every mirrored object into the (empty, fresh) server; returns the count."""
        index = self._index()
        for key in index:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=(self.root / key).read_bytes())
        return len(index)

    def sync(self) -> int:
        """Write new or changed objects to disk, forget deleted ones; returns objects copied."""
        with self._lock:
            index = self._index()
            seen: dict[str, str] = {}
            copied = 0
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj["ETag"]
                    target = self._safe_path(key)
                    if target is None:
                        self.skipped.add(key)
                        continue
                    seen[key] = etag
                    if index.get(key) == etag:
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    target.write_bytes(body)
                    copied += 1
            for key in set(index) - set(seen):
                (self.root / key).unlink(missing_ok=True)
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(seen, sort_keys=True))
            tmp.replace(self.index_path)
            return copied

    def _safe_path(self, key: str) -> Path | None:
        """Mirror path of a key; None for keys a file cannot hold (escaping the folder, `x/`)."""
        path = (self.root / key).resolve()
        if key.endswith("/") or not path.is_relative_to(self.root.resolve()):
            return None
        return path


class PeriodicSync(threading.Thread):
    """Background thread: mirror the bucket every `interval` seconds until stopped."""

    def __init__(self, mirror: S3Mirror, interval: float = 5.0, on_error=print):
        super().__init__(daemon=True, name="s3-mirror")
        self.mirror = mirror
        self.interval = interval
        self.on_error = on_error
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.mirror.sync()
            except Exception as err:  # keep mirroring; report every failure
                self.on_error(f"local S3 mirror sync failed: {err!r}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.interval + 1)
