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


def test_low_cardinality_text_stays_dictionary_encoded_and_loads_as_plain_text():
    """event_type, plan_tier, payment_status and source_key travel as dictionaries (cheaper to
    decode and to check); whatever text type the file used, the warehouse gets the same strings."""
    import io

    import duckdb
    import pyarrow.parquet as pq

    from churn_platform.ingest.load import load_day
    from churn_platform.ingest.validation import DICTIONARY_COLUMNS, TEXT_DICTIONARY
    from churn_platform.resources.warehouse import RAW_EVENTS_DDL

    table = event_table(DAY, 50)
    as_large = table.set_column(table.schema.get_field_index("plan_tier"), "plan_tier",
                                table.column("plan_tier").cast(pa.large_string()))
    files = []
    for n, source in enumerate([table, as_large]):
        sink = io.BytesIO()
        pq.write_table(source, sink)
        files.append(read_landed_file(f"events/raw/date={DAY}/part-{n}.parquet", sink.getvalue()))
    for landed in files:
        for column in (*DICTIONARY_COLUMNS, "source_key"):
            assert landed.table.schema.field(column).type == TEXT_DICTIONARY, column
        assert landed.table.column("plan_tier").to_pylist() == table.column("plan_tier").to_pylist()

    with duckdb.connect() as con:
        con.execute(RAW_EVENTS_DDL)
        load_day(con, DAY, files[:1])
        loaded = con.execute("SELECT event_type, plan_tier, payment_status, source_key FROM raw_events "
                             "ORDER BY event_id").fetchall()
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'raw_events'").fetchall())
    expected = sorted(zip(table.column("event_id").to_pylist(), table.column("event_type").to_pylist(),
                          table.column("plan_tier").to_pylist(), table.column("payment_status").to_pylist()))
    assert loaded == [(*row[1:], f"events/raw/date={DAY}/part-0.parquet") for row in expected]
    assert {types[c] for c in (*DICTIONARY_COLUMNS, "source_key")} == {"VARCHAR"}
