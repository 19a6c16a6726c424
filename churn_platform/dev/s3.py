"""boto3 clients, bucket and queue chores for the local tools (no server here: see `local_s3.py`)."""

from __future__ import annotations

import boto3

from churn_platform.events import LANDING_PREFIX
from churn_platform.settings import LOCAL_S3_CREDENTIAL, Settings

LANDING_QUEUE = "churn-landing-events"


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


def sqs_client(endpoint_url: str):
    """SQS on the loopback server (moto serves every AWS API on one port)."""
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id=LOCAL_S3_CREDENTIAL, aws_secret_access_key=LOCAL_S3_CREDENTIAL)


def client_for(settings: Settings):
    return s3_client(settings.s3_endpoint_url, local=settings.local_s3_credentials)


def ensure_bucket(client, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def bucket_is_empty(client, bucket: str) -> bool:
    return client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0) == 0


def ensure_landing_queue(endpoint_url: str, bucket: str, name: str = LANDING_QUEUE) -> str:
    """Event mode on the loopback server: a queue, and the bucket's notification of every object
    created under events/raw/ to it. Returns the queue URL (CHURN_LANDING_QUEUE_URL).

    Both live in the server's memory: set them after restoring the bucket from disk, so restored
    files are not announced as new (the sensor's first sweep lists them anyway).
    """
    sqs = sqs_client(endpoint_url)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3 = s3_client(endpoint_url)
    ensure_bucket(s3, bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": LANDING_PREFIX}]}},
        }]},
    )
    return url
