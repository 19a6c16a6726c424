"""The SQS queue that receives the landing bucket's `ObjectCreated` notifications (event mode).

Receiving hides a message for `visibility_timeout_seconds`; the landing sensor deletes it on the
tick after the one that read it, once that tick's run requests are recorded. A message whose
deletion fails (its receipt handle expired) comes back and is recognised as already requested.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
import dagster as dg
from pydantic import Field, PrivateAttr

_BATCH = 10  # the most SQS receives or deletes in one call


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


class LandingQueue(dg.ConfigurableResource):
    """An SQS queue (CHURN_LANDING_QUEUE_URL); locally on the loopback S3 server, which serves SQS too."""

    queue_url: str
    endpoint_url: str | None = Field(default=None, description="Unset on AWS; the loopback server locally.")
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    _client = PrivateAttr(default=None)

    def client(self):
        if self._client is None:
            self._client = boto3.client(
                "sqs", endpoint_url=self.endpoint_url, region_name=self.region_name,
                aws_access_key_id=self.aws_access_key_id, aws_secret_access_key=self.aws_secret_access_key,
            )
        return self._client

    def receive(self, max_calls: int, visibility_timeout_seconds: int) -> tuple[list[QueueMessage], int]:
        """Up to 10 × max_calls messages, stopping at the first empty answer; also the calls made."""
        messages: list[QueueMessage] = []
        calls = 0
        for _ in range(max_calls):
            calls += 1
            answer = self.client().receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=_BATCH, WaitTimeSeconds=0,
                VisibilityTimeout=visibility_timeout_seconds,
            )
            batch = answer.get("Messages", [])
            messages += [QueueMessage(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in batch]
            if not batch:
                break
        return messages, calls

    def delete(self, receipt_handles: list[str]) -> tuple[int, list[str]]:
        """Delete by receipt handle; returns the calls made and why any deletion failed."""
        failures: list[str] = []
        calls = 0
        for start in range(0, len(receipt_handles), _BATCH):
            batch = receipt_handles[start:start + _BATCH]
            calls += 1
            answer = self.client().delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(batch)],
            )
            failures += [f"{f.get('Code')}: {f.get('Message')}" for f in answer.get("Failed", [])]
        return calls, failures
