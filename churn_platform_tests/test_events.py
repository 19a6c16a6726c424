"""The event contract: the landing layout, and the schemas derived from the one field list."""

import duckdb
import pytest

from churn_platform.events import EVENT_COLUMNS, LANDED_SCHEMA, RAW_EVENTS_SCHEMA, landing_key, parse_landing_key
from churn_platform.resources.warehouse import RAW_EVENTS_DDL


@pytest.mark.parametrize(
    "key, expected",
    [
        ("events/raw/date=2024-01-10/a.parquet", "2024-01-10"),
        ("events/raw/date=2024-01-10/sub/a.parquet", None),
        ("events/raw/garbage.txt", None),
        ("events/raw/date=../../x.parquet", None),
        ("events/raw/date=2024-1-10/a.parquet", None),
        ("events/raw/date=2024-01-10/a.csv", None),
    ],
)
def test_parse_landing_key(key, expected):
    assert parse_landing_key(key) == expected


@pytest.mark.parametrize("suffix", ["\n", "\r", "\x00", "\t"])
def test_a_key_with_a_control_character_is_outside_the_layout(suffix):
    assert parse_landing_key(f"events/raw/date=2024-01-10/a.parquet{suffix}") is None
    assert parse_landing_key(f"events/raw/date=2024-01-10/a{suffix}b.parquet") is None


def test_landing_key_builds_what_the_parser_reads_and_refuses_bad_names():
    assert parse_landing_key(landing_key("2024-01-10", "part-000.parquet")) == "2024-01-10"
    with pytest.raises(ValueError, match="not a landing key"):
        landing_key("2024-01-10", "sub/x.parquet")


def test_warehouse_table_and_landed_schema_derive_from_the_event_fields():
    con = duckdb.connect()
    con.execute(RAW_EVENTS_DDL)
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'raw_events' ORDER BY ordinal_position"
    ).fetchall()
    assert dict(columns) == RAW_EVENTS_SCHEMA
    assert [name for name, _ in columns][1:-1] == list(EVENT_COLUMNS)
    assert LANDED_SCHEMA.names == list(EVENT_COLUMNS)
    assert str(LANDED_SCHEMA.field("event_ts").type) == "timestamp[us, tz=UTC]"
