"""The S3 landing zone (docs/contract.md §2), read through dagster-aws's S3Resource."""


from collections.abc import Iterator

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from churn_platform.events import LANDING_PREFIX, day_prefix


class LandingZone(dg.ConfigurableResource):
    """The landing bucket: where product events arrive as parquet files."""

    s3: S3Resource
    bucket: str
    _client = PrivateAttr(default=None)

    def client(self):
        """One boto3 client per resource instance: creating one costs ~0.2 s (a day's load)."""
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def day_keys(self, day: str) -> list[str]:
        """Every object key under events/raw/date=<day>/ (all pages)."""
        return [obj["Key"] for obj in self.iter_objects(day_prefix(day))]

    def iter_objects(
        self, prefix: str = LANDING_PREFIX, start_after: str = "", page_size: int = 1000
    ) -> Iterator[dict]:
        """List objects page by page (lexicographic key order)."""
        client = self.client()
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            page = client.list_objects_v2(**kwargs)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
            kwargs.pop("StartAfter", None)

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
