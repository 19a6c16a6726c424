"""boto3 clients and bucket chores for the local tools (no server here: see `local_s3.py`)."""

from __future__ import annotations

import boto3

from churn_platform.settings import LOCAL_S3_CREDENTIAL, Settings


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


def client_for(settings: Settings):
    return s3_client(settings.s3_endpoint_url, local=settings.local_s3_credentials)


def ensure_bucket(client, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def bucket_is_empty(client, bucket: str) -> bool:
    return client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0) == 0
