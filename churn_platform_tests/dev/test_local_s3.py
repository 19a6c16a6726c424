"""The local S3 keeps landed objects across restarts of `make dev` (moto itself keeps none)."""

import json
import uuid

from churn_platform.dev.local_s3 import S3Mirror
from churn_platform.dev.s3 import ensure_bucket, s3_client


def _objects(client, bucket):
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def _empty_bucket(client, bucket):
    """What a restarted moto server looks like: the bucket exists again, with nothing in it."""
    for key in _objects(client, bucket):
        client.delete_object(Bucket=bucket, Key=key)


def test_objects_survive_a_server_restart(tmp_path, s3_endpoint):
    client, bucket, mirror_root = s3_client(s3_endpoint), f"restart-{uuid.uuid4().hex[:8]}", tmp_path / "s3"
    ensure_bucket(client, bucket)
    client.put_object(Bucket=bucket, Key="events/raw/date=2024-01-01/a.parquet", Body=b"one")
    client.put_object(Bucket=bucket, Key="events/raw/date=2024-01-02/b.parquet", Body=b"two")
    client.put_object(Bucket=bucket, Key="events/raw/gone.parquet", Body=b"x")
    mirror = S3Mirror(client, bucket, mirror_root)
    assert mirror.sync() == 3
    client.put_object(Bucket=bucket, Key="events/raw/date=2024-01-01/a.parquet", Body=b"rewritten")
    client.delete_object(Bucket=bucket, Key="events/raw/gone.parquet")
    assert mirror.sync() == 1  # only the rewritten object is copied again
    before = _objects(client, bucket)

    _empty_bucket(client, bucket)
    assert S3Mirror(client, bucket, mirror_root).restore() == 2
    assert _objects(client, bucket) == before
    assert before["events/raw/date=2024-01-01/a.parquet"] == b"rewritten"


ODD_KEYS = {
    "events/raw/date=2024-01-01/a.parquet": b"good file",
    "events/raw/date=2024-01-01": b"an object named like the folder of another",
    "events/raw//date=2024-01-01/a.parquet": b"double slash",
    "events/raw/./date=2024-01-01/a.parquet": b"dot segment",
    "events/raw/date=2024-01-01/a.parquet/.": b"trailing dot",
    "events/raw/" + "x" * 300 + ".parquet": b"a name longer than 255 bytes",
    "../../escape.parquet": b"climbs out",
    "events/raw/": b"",
}


def test_every_key_maps_to_its_own_file_and_survives_a_restart(tmp_path, s3_endpoint):
    """Keys that alias as paths (//, /./, /., folder names) never overwrite or delete each other."""
    client, bucket = s3_client(s3_endpoint), f"odd-{uuid.uuid4().hex[:8]}"
    ensure_bucket(client, bucket)
    for key, body in ODD_KEYS.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    mirror = S3Mirror(client, bucket, tmp_path / "s3")
    assert mirror.sync() == len(ODD_KEYS) and mirror.failures == {}
    assert not (tmp_path / "escape.parquet").exists()

    client.delete_object(Bucket=bucket, Key="events/raw//date=2024-01-01/a.parquet")  # delete an alias
    mirror.sync()
    _empty_bucket(client, bucket)
    assert S3Mirror(client, bucket, tmp_path / "s3").restore() == len(ODD_KEYS) - 1
    expected = {k: v for k, v in ODD_KEYS.items() if k != "events/raw//date=2024-01-01/a.parquet"}
    assert _objects(client, bucket) == expected  # the good file kept its own bytes


def test_a_missing_file_is_reported_on_restore_not_a_crash(tmp_path, s3_endpoint):
    client, bucket = s3_client(s3_endpoint), f"lost-{uuid.uuid4().hex[:8]}"
    ensure_bucket(client, bucket)
    client.put_object(Bucket=bucket, Key="events/raw/date=2024-01-01/a.parquet", Body=b"a")
    client.put_object(Bucket=bucket, Key="events/raw/date=2024-01-02/b.parquet", Body=b"b")
    mirror = S3Mirror(client, bucket, tmp_path / "s3")
    mirror.sync()
    (mirror.root / S3Mirror.file_name("events/raw/date=2024-01-01/a.parquet")).unlink()
    _empty_bucket(client, bucket)
    restorer = S3Mirror(client, bucket, tmp_path / "s3")
    assert restorer.restore() == 1
    assert list(restorer.failures) == ["events/raw/date=2024-01-01/a.parquet"]
    assert _objects(client, bucket) == {"events/raw/date=2024-01-02/b.parquet": b"b"}


def test_one_failing_key_does_not_stop_the_others(tmp_path, s3_endpoint):
    client, bucket = s3_client(s3_endpoint), f"fail-{uuid.uuid4().hex[:8]}"
    ensure_bucket(client, bucket)
    client.put_object(Bucket=bucket, Key="a.parquet", Body=b"a")
    client.put_object(Bucket=bucket, Key="b.parquet", Body=b"b")
    mirror = S3Mirror(client, bucket, tmp_path / "s3")
    blocker = mirror.root / S3Mirror.file_name("a.parquet")
    blocker.mkdir(parents=True)  # a folder where a's file must go: writing it fails
    assert mirror.sync() == 1
    assert set(mirror.failures) == {"a.parquet"}
    assert json.loads(mirror.index_path.read_text())["objects"].keys() == {"b.parquet"}


def test_an_index_of_the_first_layout_is_still_restored(tmp_path, s3_endpoint):
    client, bucket = s3_client(s3_endpoint), f"v1-{uuid.uuid4().hex[:8]}"
    ensure_bucket(client, bucket)
    root = tmp_path / "s3"
    (root / bucket / "events/raw/date=2024-01-01").mkdir(parents=True)
    (root / bucket / "events/raw/date=2024-01-01/a.parquet").write_bytes(b"old layout")
    (root / f"{bucket}.index.json").write_text(json.dumps({"events/raw/date=2024-01-01/a.parquet": '"x"'}))
    mirror = S3Mirror(client, bucket, root)
    assert mirror.restore() == 1
    mirror.sync()  # rewrites it in the new layout and removes the old file
    assert not (root / bucket / "events/raw/date=2024-01-01/a.parquet").exists()
    _empty_bucket(client, bucket)
    assert S3Mirror(client, bucket, root).restore() == 1
    assert _objects(client, bucket) == {"events/raw/date=2024-01-01/a.parquet": b"old layout"}
