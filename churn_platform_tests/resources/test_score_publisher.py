"""Scores published to S3 (loopback server) for the CRM: rows, manifest, atomic replacement."""

import datetime as dt
import hashlib
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_platform.ml.scoring import risk_deciles
from churn_platform.resources import build_resources, build_s3
from churn_platform.resources.score_publisher import (
    MANIFEST_NAME,
    PublishedScoresError,
    ScorePublisher,
    ScoresNotPublishedError,
)

AS_OF = dt.date(2024, 1, 29)
RUN = "6a7e7057-3fa6-4a95-bda9-c4d7d28961ff"


def _scores(n: int = 20, model_version: str = "3", first_user: int = 1) -> pd.DataFrame:
    users = np.arange(first_user, first_user + n, dtype=np.int64)
    probability = np.linspace(0.95, 0.01, n)
    return pd.DataFrame({"user_id": users, "churn_probability": probability,
                         "risk_decile": risk_deciles(probability, users), "model_version": model_version})


@pytest.fixture
def publisher(settings):
    return build_resources(settings)["score_publisher"]


def _keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def _parquet_at(s3, uri: str) -> pa.Table:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_the_resource_is_built_from_settings(settings):
    publisher = build_resources(settings)["score_publisher"]
    assert (publisher.bucket, publisher.prefix) == (settings.landing_bucket, "scores/")
    other = build_resources(settings.with_overrides(scores_bucket="crm", scores_prefix="/exports/churn"))
    assert (other["score_publisher"].bucket, other["score_publisher"].prefix) == ("crm", "exports/churn/")


def test_published_rows_equal_the_input_row_for_row(publisher, s3, settings):
    scores = _scores()
    published = publisher.publish(AS_OF, scores, run_id=RUN)

    folder = f"scores/as_of_date={AS_OF}/"
    assert published.uri.startswith(f"s3://{settings.landing_bucket}/{folder}scores-{RUN}-")
    assert published.uri.endswith(".parquet")
    assert published.manifest_uri == f"s3://{settings.landing_bucket}/{folder}{MANIFEST_NAME}"
    assert (published.rows, published.removed) == (20, ())

    table = _parquet_at(s3, published.uri)  # what any parquet reader sees
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("user_id", "int64"), ("churn_probability", "double"), ("risk_decile", "int32"), ("model_version", "string")]
    expected = scores.astype({"risk_decile": "int32"})
    pd.testing.assert_frame_equal(table.to_pandas(), expected)
    pd.testing.assert_frame_equal(publisher.read(AS_OF), expected)
    body = s3.get_object(Bucket=settings.landing_bucket, Key=published.uri.split("/", 3)[3])["Body"].read()
    assert published.sha256 == hashlib.sha256(body).hexdigest()


def test_the_manifest_names_the_file_and_describes_it(publisher):
    published = publisher.publish(AS_OF, _scores().assign(as_of_date=AS_OF), run_id=RUN)
    manifest = publisher.manifest(AS_OF)
    published_at = dt.datetime.fromisoformat(manifest.pop("published_at"))
    assert published_at.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - published_at) < dt.timedelta(minutes=1)
    assert manifest == {
        "format_version": 1,
        "as_of_date": "2024-01-29",
        "data_file": published.uri.rsplit("/", 1)[1],
        "rows": 20,
        "columns": [{"name": "user_id", "type": "int64"}, {"name": "churn_probability", "type": "double"},
                    {"name": "risk_decile", "type": "int32"}, {"name": "model_version", "type": "string"}],
        "model_versions": ["3"],
        "sha256": published.sha256,
        "run_id": RUN,
    }


def test_a_rerun_replaces_the_partition_and_leaves_others_alone(publisher, s3, settings):
    other_week = publisher.publish(AS_OF - dt.timedelta(days=7), _scores(), run_id=RUN)
    first = publisher.publish(AS_OF, _scores(), run_id=RUN)
    second = publisher.publish(AS_OF, _scores(n=5, model_version="4", first_user=100), run_id="rerun")

    folder = f"scores/as_of_date={AS_OF}/"
    assert second.removed == (folder + first.uri.rsplit("/", 1)[1],)
    assert _keys(s3, settings.landing_bucket, folder) == sorted([folder + MANIFEST_NAME, second.uri.split("/", 3)[3]])
    assert publisher.manifest(AS_OF)["data_file"] == second.uri.rsplit("/", 1)[1]
    read = publisher.read(AS_OF)
    assert read["user_id"].tolist() == [100, 101, 102, 103, 104] and set(read["model_version"]) == {"4"}
    assert len(publisher.read(AS_OF - dt.timedelta(days=7))) == 20
    assert other_week.uri.split("/", 3)[3] in _keys(s3, settings.landing_bucket)


def test_a_crashed_publish_is_never_read_and_the_next_publish_removes_it(publisher, s3, settings):
    publisher.publish(AS_OF, _scores(), run_id=RUN)
    folder = f"scores/as_of_date={AS_OF}/"
    orphan = folder + "scores-crashed-0000beef.parquet"  # data written, manifest never switched
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(_scores(n=3, model_version="99", first_user=900)), sink)
    s3.put_object(Bucket=settings.landing_bucket, Key=orphan, Body=sink.getvalue())
    unrelated = folder + "README.txt"  # not a data file: not the publisher's to delete
    s3.put_object(Bucket=settings.landing_bucket, Key=unrelated, Body=b"hello")

    assert len(publisher.read(AS_OF)) == 20 and 900 not in set(publisher.read(AS_OF)["user_id"])
    published = publisher.publish(AS_OF, _scores(n=4), run_id="next")
    assert orphan in published.removed and len(published.removed) == 2
    assert _keys(s3, settings.landing_bucket, folder) == sorted(
        [folder + MANIFEST_NAME, published.uri.split("/", 3)[3], unrelated])
    assert publisher.read(AS_OF)["user_id"].tolist() == [1, 2, 3, 4]


def test_a_failed_cleanup_is_loud_and_the_next_publish_finishes_it(publisher, s3, settings, monkeypatch):
    first = publisher.publish(AS_OF, _scores(), run_id=RUN)
    client = publisher.client()

    def refuse(**kwargs):
        raise RuntimeError("delete refused")

    monkeypatch.setattr(client, "delete_object", refuse)
    with pytest.raises(RuntimeError, match="delete refused"):
        publisher.publish(AS_OF, _scores(n=6), run_id="second")
    assert len(publisher.read(AS_OF)) == 6  # the manifest had switched: consumers see the new rows
    monkeypatch.undo()
    third = publisher.publish(AS_OF, _scores(n=7), run_id="third")
    assert first.uri.split("/", 3)[3] in third.removed and len(third.removed) == 2
    assert len([k for k in _keys(s3, settings.landing_bucket) if k.endswith(".parquet")]) == 1


def test_an_overlapping_publish_is_reported_and_deletes_nothing(publisher, s3, settings, monkeypatch):
    client = publisher.client()
    put = client.put_object
    rival = {}

    def put_then_overtaken(**kwargs):
        put(**kwargs)
        if kwargs["Key"].endswith(MANIFEST_NAME) and not rival:
            manifest = json.loads(kwargs["Body"])
            rival["file"] = "scores-rival-00000000.parquet"
            put(**{**kwargs, "Body": json.dumps({**manifest, "data_file": rival["file"]})})

    monkeypatch.setattr(client, "put_object", put_then_overtaken)
    with pytest.raises(PublishedScoresError, match="must not overlap"):
        publisher.publish(AS_OF, _scores(), run_id=RUN)
    written = [k for k in _keys(s3, settings.landing_bucket) if k.endswith(".parquet")]
    assert len(written) == 1 and f"scores-{RUN}-" in written[0]  # left for the next publish to remove


def test_read_refuses_a_missing_partition_and_a_tampered_file(publisher, s3, settings):
    with pytest.raises(ScoresNotPublishedError, match="no churn scores published for 2024-01-29"):
        publisher.read(AS_OF)
    published = publisher.publish(AS_OF, _scores(), run_id=RUN)
    key = published.uri.split("/", 3)[3]
    s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=b"not the parquet we wrote")
    with pytest.raises(PublishedScoresError, match="sha256"):
        publisher.read(AS_OF)
    s3.delete_object(Bucket=settings.landing_bucket, Key=key)
    with pytest.raises(PublishedScoresError, match="does not exist"):
        publisher.read(AS_OF)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.drop(columns="risk_decile"), r"missing columns \['risk_decile'\]"),
        (lambda df: df.assign(score=1.0), r"unexpected columns \['score'\]"),
        (lambda df: df.iloc[:0], "no rows"),
        (lambda df: df.assign(as_of_date=[AS_OF] * 10 + [AS_OF - dt.timedelta(days=7)] * 10),
         "one partition holds one as-of date"),
        (lambda df: df.assign(as_of_date=pd.Timestamp("2024-01-22")), r"as_of_date holds \['2024-01-22'\]"),
        (lambda df: df.assign(churn_probability=np.nan), r"null values in \['churn_probability'\]"),
        (lambda df: df.assign(churn_probability=1.5), r"churn_probability must lie in \[0, 1\]"),
        (lambda df: df.assign(risk_decile=11), r"risk_decile must lie in 1..10"),
        (lambda df: df.assign(user_id=df["user_id"].astype(float)), "user_id must be integers"),
        (lambda df: df.assign(user_id=7), "duplicate user_id"),
        (lambda df: df.assign(model_version=3), "model_version must be non-empty strings"),
    ],
)
def test_bad_scores_are_refused_before_anything_is_written(publisher, s3, settings, change, message):
    with pytest.raises(ValueError, match=message):
        publisher.publish(AS_OF, change(_scores()), run_id=RUN)
    assert _keys(s3, settings.landing_bucket) == []


def test_bad_arguments_are_refused(publisher):
    with pytest.raises(ValueError, match="run_id"):
        publisher.publish(AS_OF, _scores(), run_id="a/b")
    with pytest.raises(ValueError, match="datetime.date"):
        publisher.publish(dt.datetime(2024, 1, 29), _scores(), run_id=RUN)


def test_a_custom_prefix_is_a_folder(settings):
    publisher = ScorePublisher(s3=build_s3(settings), bucket=settings.landing_bucket, prefix="crm/churn")
    published = publisher.publish(AS_OF, _scores(), run_id=RUN)
    assert published.manifest_uri == f"s3://{settings.landing_bucket}/crm/churn/as_of_date=2024-01-29/_manifest.json"
    assert len(publisher.read(AS_OF)) == 20
