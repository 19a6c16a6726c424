"""The event contract and the landing layout (docs/contract.md §2), in one place.

Everything that knows an event's columns or where a file lands derives from here: the
warehouse DDL and expected schema, file validation, the generator, the sensor and the CLI.
Adding a column is one entry in `EVENT_FIELDS` (plus its test).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

EVENT_TYPES = ("login", "session", "payment", "support_ticket", "cancel")
PLAN_TIERS = ("basic", "standard", "premium")
PAYMENT_STATUSES = ("succeeded", "failed")
# Longer sessions are not real (30,000 years); downstream sums are exact numerics with 22
# integer digits, which this bound keeps far out of reach.
MAX_SESSION_SECONDS = 1e12


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_null(arrow_type)


def _is_number(arrow_type: pa.DataType) -> bool:
    return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)


@dataclass(frozen=True)
class EventField:
    """One column of a landed event: its contract type, warehouse type and what input it accepts."""

    name: str
    arrow_type: pa.DataType  # the type the warehouse stores (timestamps as naive UTC)
    sql_type: str
    required: bool  # NOT NULL in the warehouse
    accepts: Callable[[pa.DataType], bool]


EVENT_FIELDS: tuple[EventField, ...] = (
    EventField("event_id", pa.string(), "VARCHAR", True, _is_text),
    EventField("user_id", pa.int64(), "BIGINT", True, pa.types.is_integer),
    EventField("event_type", pa.string(), "VARCHAR", True, _is_text),
    EventField("event_ts", pa.timestamp("us"), "TIMESTAMP", True, pa.types.is_timestamp),
    EventField("plan_tier", pa.string(), "VARCHAR", False, _is_text),
    EventField("session_seconds", pa.float64(), "DOUBLE", False, _is_number),
    EventField("payment_status", pa.string(), "VARCHAR", False, _is_text),
)
EVENT_COLUMNS = tuple(f.name for f in EVENT_FIELDS)
FIELDS_BY_NAME = {f.name: f for f in EVENT_FIELDS}

# What producers write: instants in UTC with microsecond precision (Spark cannot read nanos).
LANDED_SCHEMA = pa.schema(
    [
        pa.field(
            f.name,
            pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(f.arrow_type) else f.arrow_type,
            nullable=not f.required,
        )
        for f in EVENT_FIELDS
    ]
)

# Warehouse columns of raw_events: the event's UTC date, the contract columns, the file it came from.
EVENT_DATE_COLUMN = ("event_date", "DATE")
SOURCE_KEY_COLUMN = ("source_key", "VARCHAR")
RAW_EVENTS_SCHEMA: dict[str, str] = {
    EVENT_DATE_COLUMN[0]: EVENT_DATE_COLUMN[1],
    **{f.name: f.sql_type for f in EVENT_FIELDS},
    SOURCE_KEY_COLUMN[0]: SOURCE_KEY_COLUMN[1],
}

# Landing layout: s3://<bucket>/events/raw/date=YYYY-MM-DD/<name>.parquet
LANDING_PREFIX = "events/raw/"
_KEY_PATTERN = re.compile(
    re.escape(LANDING_PREFIX) + r"date=(\d{4}-\d{2}-\d{2})/([^/\x00-\x1f\x7f]+\.parquet)"
)


def day_prefix(day: dt.date | str) -> str:
    """The folder of one date's files, e.g. events/raw/date=2024-01-31/."""
    return f"{LANDING_PREFIX}date={day}/"


def landing_key(day: dt.date | str, name: str) -> str:
    """The key of a file named `name` landed for `day`."""
    key = day_prefix(day) + name
    if parse_landing_key(key) is None:
        raise ValueError(f"{key!r} is not a landing key (events/raw/date=YYYY-MM-DD/<name>.parquet)")
    return key


def parse_landing_key(key: str) -> str | None:
    """The `date=` text of a well-formed landing key; None for keys outside the layout.

    The whole key must match: a trailing newline or any control character is outside it.
    """
    match = _KEY_PATTERN.fullmatch(key)
    return match.group(1) if match else None
