"""Churn scores published to S3 for the CRM (docs/contract.md §3, "Scores on S3").

One folder per weekly partition, `<prefix>as_of_date=YYYY-MM-DD/`, holds one parquet file and
`_manifest.json`, which names that file. A publish writes the data under a new name, then
replaces the manifest (one PUT, atomic in S3), then deletes the partition's data files the
manifest no longer names. A consumer that reads the manifest first, then the file it names,
sees the old partition or the new one, never a mix; a rerun replaces the partition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr, field_validator

from churn_platform.constants import DEFAULT_SCORES_PREFIX

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_NAME = "_manifest.json"  # the leading "_" makes Spark, Hive and pyarrow datasets skip it
MANIFEST_FORMAT_VERSION = 1
SCORES_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("churn_probability", pa.float64(), nullable=False),
    pa.field("risk_decile", pa.int32(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
])
SCORE_COLUMNS = tuple(SCORES_SCHEMA.names)
AS_OF_COLUMN = "as_of_date"  # allowed in the input (checked against as_of), not written: the folder holds it
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_DATA_FILE = re.compile(r"scores-[A-Za-z0-9_-]+\.parquet")


class ScoresNotPublishedError(FileNotFoundError):
    """The partition has no manifest: it was never published (or not to this bucket and prefix)."""


class PublishedScoresError(RuntimeError):
    """A published partition is not what its manifest says, or a publish was overtaken by another."""


@dataclass(frozen=True)
class PublishedScores:
    """What one publish wrote: the data file, its manifest, and the stale data files it deleted."""

    uri: str
    manifest_uri: str
    rows: int
    sha256: str
    removed: tuple[str, ...]  # keys of the partition's older data files, deleted after the switch


class ScorePublisher(dg.ConfigurableResource):
    """Where the CRM reads churn scores: parquet plus a manifest per week in an S3 bucket."""

    s3: S3Resource
    bucket: str
    prefix: str = DEFAULT_SCORES_PREFIX
    _client = PrivateAttr(default=None)

    @field_validator("prefix")
    @classmethod
    def _folder(cls, prefix: str) -> str:
        """A folder: no leading "/", one trailing "/" (an empty prefix means the bucket's root)."""
        prefix = prefix.lstrip("/")
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def client(self):
        """One boto3 client per resource instance, as in LandingZone."""
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def partition_prefix(self, as_of: dt.date) -> str:
        """The folder of one week's scores, e.g. scores/as_of_date=2024-01-29/."""
        return f"{self.prefix}as_of_date={_iso_date(as_of)}/"

    def manifest_key(self, as_of: dt.date) -> str:
        return self.partition_prefix(as_of) + MANIFEST_NAME

    def publish(self, as_of: dt.date, scores: pd.DataFrame, *, run_id: str) -> PublishedScores:
        """Replace the partition `as_of` with `scores` (user_id, churn_probability, risk_decile,
        model_version; an as_of_date column, if present, must hold as_of only)."""
        folder = self.partition_prefix(as_of)
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"run_id {run_id!r}: expected letters, digits, '-' or '_' (it names the data file)")
        table = _scores_table(as_of, scores)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        body = sink.getvalue()
        digest = hashlib.sha256(body).hexdigest()
        data_file = f"scores-{run_id}-{uuid.uuid4().hex[:8]}.parquet"
        client = self.client()
        client.put_object(Bucket=self.bucket, Key=folder + data_file, Body=body,
                          ContentType="application/vnd.apache.parquet")
        manifest = {
            "format_version": MANIFEST_FORMAT_VERSION,
            "as_of_date": _iso_date(as_of),
            "data_file": data_file,
            "rows": table.num_rows,
            "columns": [{"name": f.name, "type": str(f.type)} for f in SCORES_SCHEMA],
            "model_versions": sorted(set(table.column("model_version").to_pylist())),
            "sha256": digest,
            "run_id": run_id,
            "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        client.put_object(Bucket=self.bucket, Key=folder + MANIFEST_NAME, Body=json.dumps(manifest, indent=2),
                          ContentType="application/json")
        current = self.manifest(as_of)["data_file"]
        if current != data_file:
            raise PublishedScoresError(
                f"another publish of {self.uri(folder)} replaced the manifest right after this one "
                f"(it names {current}, this run wrote {data_file}): publishes of one partition must "
                "not overlap; nothing was deleted, the next publish cleans up"
            )
        removed = []
        for key in self._data_keys(folder):
            if key != folder + data_file:
                client.delete_object(Bucket=self.bucket, Key=key)
                removed.append(key)
        return PublishedScores(uri=self.uri(folder + data_file), manifest_uri=self.uri(folder + MANIFEST_NAME),
                               rows=table.num_rows, sha256=digest, removed=tuple(removed))

    def manifest(self, as_of: dt.date) -> dict:
        """The partition's manifest; ScoresNotPublishedError when there is none."""
        key = self.manifest_key(as_of)
        body = self._get(key, missing=ScoresNotPublishedError(f"no churn scores published for {_iso_date(as_of)}: "
                                                              f"{self.uri(key)} does not exist"))
        return json.loads(body)

    def read(self, as_of: dt.date) -> pd.DataFrame:
        """What a consumer does: the manifest, then the file it names, checked against its sha256."""
        manifest = self.manifest(as_of)
        data_file = manifest.get("data_file", "")
        if manifest.get("as_of_date") != _iso_date(as_of) or not _DATA_FILE.fullmatch(data_file):
            raise PublishedScoresError(f"{self.uri(self.manifest_key(as_of))} is not a manifest of this "
                                       f"partition (as_of_date {manifest.get('as_of_date')!r}, "
                                       f"data_file {data_file!r})")
        key = self.partition_prefix(as_of) + data_file
        body = self._get(key, missing=PublishedScoresError(
            f"{self.uri(key)}, named by the manifest, does not exist: another publish of this partition "
            "switched the manifest meanwhile (read again), or the file was deleted by hand"))
        if hashlib.sha256(body).hexdigest() != manifest["sha256"]:
            raise PublishedScoresError(f"{self.uri(key)} does not match the sha256 in its manifest")
        table = pq.read_table(io.BytesIO(body))
        if not table.schema.equals(SCORES_SCHEMA) or table.num_rows != manifest["rows"]:
            raise PublishedScoresError(f"{self.uri(key)} has {table.num_rows} rows of {table.schema.to_string()}; "
                                       f"the manifest promises {manifest['rows']} rows of {list(SCORE_COLUMNS)}")
        return table.to_pandas()

    def _data_keys(self, folder: str) -> list[str]:
        """Every data file directly in the folder (all pages); other objects are left alone."""
        keys = []
        kwargs = {"Bucket": self.bucket, "Prefix": folder}
        while True:
            page = self.client().list_objects_v2(**kwargs)
            keys += [o["Key"] for o in page.get("Contents", []) if _DATA_FILE.fullmatch(o["Key"][len(folder):])]
            if not page.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _get(self, key: str, missing: Exception) -> bytes:
        try:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise missing from None
            raise


def _iso_date(as_of: dt.date) -> str:
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise ValueError(f"as_of {as_of!r}: expected a datetime.date (a weekly partition's as-of date)")
    return as_of.isoformat()


def _scores_table(as_of: dt.date, scores: pd.DataFrame) -> pa.Table:
    """The scores as a table of SCORES_SCHEMA, or a ValueError naming what is wrong."""
    import pandas as pd

    def invalid(problem: str) -> ValueError:
        return ValueError(f"churn scores for {_iso_date(as_of)} not published: {problem}")

    if not isinstance(scores, pd.DataFrame):
        raise invalid(f"expected a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise invalid(f"missing columns {missing} (expected {list(SCORE_COLUMNS)})")
    unexpected = [c for c in scores.columns if c not in SCORE_COLUMNS and c != AS_OF_COLUMN]
    if unexpected:
        raise invalid(f"unexpected columns {unexpected} (expected {list(SCORE_COLUMNS)}, optionally {AS_OF_COLUMN})")
    if scores.empty:
        raise invalid("no rows")
    nulls = [c for c in scores.columns if scores[c].isna().any()]
    if nulls:
        raise invalid(f"null values in {nulls}")
    if AS_OF_COLUMN in scores.columns:
        dates = sorted({pd.Timestamp(d).date() for d in scores[AS_OF_COLUMN].unique()})
        if dates != [as_of]:
            raise invalid(f"{AS_OF_COLUMN} holds {[d.isoformat() for d in dates]}; one partition holds one as-of date")
    for column in ("user_id", "risk_decile"):
        if not pd.api.types.is_integer_dtype(scores[column]):
            raise invalid(f"{column} must be integers, got dtype {scores[column].dtype}")
    probability = scores["churn_probability"]
    if not pd.api.types.is_numeric_dtype(probability) or pd.api.types.is_bool_dtype(probability):
        raise invalid(f"churn_probability must be numbers, got dtype {probability.dtype}")
    if not probability.between(0.0, 1.0).all():
        raise invalid("churn_probability must lie in [0, 1]")
    if not scores["risk_decile"].between(1, 10).all():
        raise invalid("risk_decile must lie in 1..10")
    if not all(isinstance(v, str) and v for v in scores["model_version"]):
        raise invalid("model_version must be non-empty strings")
    duplicated = scores["user_id"][scores["user_id"].duplicated()]
    if len(duplicated):
        raise invalid(f"{len(duplicated)} duplicate user_id rows (e.g. {duplicated.iloc[0]}); one row per user")
    return pa.Table.from_pandas(scores[list(SCORE_COLUMNS)], schema=SCORES_SCHEMA, preserve_index=False)
