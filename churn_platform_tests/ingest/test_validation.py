"""File-level validation of landed parquet files: bad files fail naming the key."""

import datetime as dt

import pyarrow as pa
import pytest

from churn_platform.ingest.validation import BadFileError, conform, read_landed_file
from churn_platform_tests.helpers import event_table

DAY = dt.date(2024, 1, 10)


def test_unreadable_file_names_the_key():
    with pytest.raises(BadFileError, match="events/raw/date=2024-01-10/x.parquet: unreadable parquet"):
        read_landed_file("events/raw/date=2024-01-10/x.parquet", b"not a parquet file")


def test_missing_column_is_a_bad_file():
    table = event_table(DAY, 3).drop(["event_type"])
    with pytest.raises(BadFileError, match=r"missing required column\(s\) \['event_type'\]"):
        conform("k.parquet", table)


def test_wrong_type_is_a_bad_file():
    table = event_table(DAY, 3).set_column(1, "user_id", pa.array(["a", "b", "c"]))
    with pytest.raises(BadFileError, match="wrong column type.*user_id"):
        conform("k.parquet", table)


def test_compatible_types_are_cast_and_extra_columns_reported():
    table = event_table(DAY, 3)
    table = table.set_column(1, "user_id", table.column("user_id").cast(pa.int32()))
    table = table.append_column("browser", pa.array(["x"] * 3))
    landed = conform("k.parquet", table)
    assert landed.table.schema.field("user_id").type == pa.int64()
    assert landed.table.schema.field("event_ts").type == pa.timestamp("us")
    assert landed.extra_columns == ("browser",)


def test_an_unforeseen_shape_is_still_a_bad_file_naming_the_key(monkeypatch):
    """Whatever conform trips over after the read, the error names the file and is bad input."""
    import io

    import pyarrow.parquet as pq

    from churn_platform.ingest import validation

    def tripping_conform(key, table):
        raise KeyError("ambiguous field")

    monkeypatch.setattr(validation, "conform", tripping_conform)
    sink = io.BytesIO()
    pq.write_table(event_table(DAY, 3), sink)
    with pytest.raises(BadFileError, match=r"x\.parquet: does not fit the event contract \(KeyError"):
        validation.read_landed_file("events/raw/date=2024-01-10/x.parquet", sink.getvalue())
