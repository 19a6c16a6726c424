"""The local S3 keeps landed objects across restarts of `make dev` (moto itself keeps none)."""

import uuid

from churn_platform.local_stack import S3Mirror, ensure_bucket, s3_client


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


def test_keys_that_cannot_be_files_are_reported_not_mirrored(tmp_path, s3_endpoint):
    client, bucket = s3_client(s3_endpoint), f"junk-{uuid.uuid4().hex[:8]}"
    ensure_bucket(client, bucket)
    client.put_object(Bucket=bucket, Key="../../escape.parquet", Body=b"x")
    client.put_object(Bucket=bucket, Key="events/raw/", Body=b"")
    mirror = S3Mirror(client, bucket, tmp_path / "s3")
    assert mirror.sync() == 0
    assert mirror.skipped == {"../../escape.parquet", "events/raw/"}
    assert not (tmp_path / "escape.parquet").exists()
