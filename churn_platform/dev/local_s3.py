"""The local S3: moto's server on loopback, mirrored to disk so landed files survive restarts.

moto keeps objects in memory only. `S3Mirror` restores the bucket from
`$CHURN_DATA_DIR/s3/<bucket>/` on start and copies new or changed objects back to disk
every few seconds and at shutdown. (No S3-compatible server that persists to disk by itself
installs from our registries without a separate binary, so the mirror stays.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer


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


class S3Mirror:
    """Copies one bucket to a folder and back, by ETag, so restarts lose nothing.

    Every key is stored under a name derived from its SHA-256, never from the key's text:
    the mapping is injective whatever the key holds (`//`, `/./`, `..`, a key that is also
    another key's folder, 1024 bytes), nothing is normalized and nothing escapes the folder.
    The index (key -> ETag and file) is replaced atomically. A key that fails is reported in
    `failures` and skipped; the others are still mirrored.
    """

    INDEX_VERSION = 2  # version 1 stored each object at its key's path: still restored

    def __init__(self, client, bucket: str, root: Path):
        self.client = client
        self.bucket = bucket
        self.root = root / bucket
        self.index_path = root / f"{bucket}.index.json"
        self._lock = threading.Lock()
        self.failures: dict[str, str] = {}  # key -> why it was not mirrored or restored

    @staticmethod
    def file_name(key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{digest[:2]}/{digest}"

    def _index(self) -> dict[str, dict[str, str]]:
        if not self.index_path.exists():
            return {}
        data = json.loads(self.index_path.read_text())
        if "version" not in data:  # version 1: {key: etag}, each file at its key's path
            return {key: {"etag": etag, "file": key} for key, etag in data.items()}
        return data["objects"]

    def _write_index(self, objects: dict[str, dict[str, str]]) -> None:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name(self.index_path.name + ".tmp")
        tmp.write_text(json.dumps({"version": self.INDEX_VERSION, "objects": objects}, sort_keys=True))
        os.replace(tmp, self.index_path)

    def restore(self) -> int:
        """Upload every mirrored object into the (empty, fresh) server; returns the count restored.

        A missing or unreadable file is reported in `failures`, never a crash.
        """
        restored = 0
        for key, entry in self._index().items():
            try:
                body = (self.root / entry["file"]).read_bytes()
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
            except (OSError, ClientError) as err:
                self.failures[key] = f"not restored: {err}"
                continue
            restored += 1
        return restored

    def sync(self) -> int:
        """Write new or changed objects to disk, forget deleted ones; returns objects copied."""
        with self._lock:
            index = self._index()
            seen: dict[str, dict[str, str]] = {}
            copied = 0
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj["ETag"]
                    entry = {"etag": etag, "file": self.file_name(key)}
                    if index.get(key) == entry and (self.root / entry["file"]).exists():
                        seen[key] = entry
                        continue
                    try:
                        self._copy(key, entry["file"])
                    except (OSError, ClientError) as err:
                        self.failures[key] = f"not mirrored: {err}"
                        if key in index:
                            seen[key] = index[key]  # keep the last good copy
                        continue
                    self.failures.pop(key, None)
                    seen[key] = entry
                    copied += 1
            self._write_index(seen)
            for key, entry in index.items():  # deleted keys, and files of an older layout
                if seen.get(key, {}).get("file") != entry["file"]:
                    (self.root / entry["file"]).unlink(missing_ok=True)
            return copied

    def _copy(self, key: str, file_name: str) -> None:
        """Object bytes to their file, written whole (temp file, then rename)."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        target = self.root / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, target)


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
