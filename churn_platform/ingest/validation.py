"""File-level validation of landed parquet files (DESIGN.md §2).

A file that cannot be read, or whose columns are missing or of the wrong type, fails the
whole partition: `BadFileError` names the key and the problem. Row-level rules live in
SQL (`load.py`) so they are counted, not silently dropped.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn_platform.constants import EVENT_COLUMNS, LANDING_PREFIX

# Target arrow type per contract column, and the arrow types accepted for it.
CONTRACT_TYPES: dict[str, pa.DataType] = {
    "event_id": pa.string(),
    "user_id": pa.int64(),
    "event_type": pa.string(),
    "event_ts": pa.timestamp("us"),
    "plan_tier": pa.string(),
    "session_seconds": pa.float64(),
    "payment_status": pa.string(),
}

_KEY_PATTERN = re.compile(
    "^" + re.escape(LANDING_PREFIX) + r"date=(\d{4}-\d{2}-\d{2})/([^/]+\.parquet)$"
)


class BadFileError(ValueError):
    """A landed object that cannot be loaded at all."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class LandedFile:
    key: str
    table: pa.Table  # contract columns, contract types, plus source_key
    extra_columns: tuple[str, ...]


def landing_prefix(day: str) -> str:
    return f"{LANDING_PREFIX}date={day}/"


def parse_landing_key(key: str) -> str | None:
    """The `date=` of a well-formed landing key, or None for keys outside the layout."""
    match = _KEY_PATTERN.match(key)
    return match.group(1) if match else None


def _accepts(column: str, arrow_type: pa.DataType) -> bool:
    if column == "user_id":
        return pa.types.is_integer(arrow_type)
    if column == "event_ts":
        return pa.types.is_timestamp(arrow_type)
    if column == "session_seconds":
        return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_null(
        arrow_type
    )


def _to_utc_naive(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as naive UTC microseconds (arrow stores instants as UTC; naive input is UTC)."""
    return pc.cast(column, pa.timestamp("us"), safe=False)


def conform(key: str, table: pa.Table) -> LandedFile:
    """Check a file's columns against the contract and cast them to the contract types."""
    missing = [c for c in EVENT_COLUMNS if c not in table.column_names]
    if missing:
        raise BadFileError(key, f"missing required column(s) {missing}")
    wrong = {
        c: str(table.schema.field(c).type)
        for c in EVENT_COLUMNS
        if not _accepts(c, table.schema.field(c).type)
    }
    if wrong:
        expected = {c: str(CONTRACT_TYPES[c]) for c in wrong}
        raise BadFileError(key, f"wrong column type(s) {wrong}, expected {expected}")
    columns = {}
    for name in EVENT_COLUMNS:
        column = table.column(name)
        try:
            columns[name] = (
                _to_utc_naive(column) if name == "event_ts" else column.cast(CONTRACT_TYPES[name])
            )
        except pa.ArrowInvalid as err:
            raise BadFileError(key, f"column {name!r} does not fit {CONTRACT_TYPES[name]} ({err})") from err
    columns["source_key"] = pa.array([key] * table.num_rows, pa.string())
    extra = tuple(c for c in table.column_names if c not in EVENT_COLUMNS)
    return LandedFile(key=key, table=pa.table(columns), extra_columns=extra)


def read_landed_file(key: str, payload: bytes) -> LandedFile:
    """Parse one landed object; any parquet error becomes a BadFileError naming the key."""
    try:
        table = pq.read_table(io.BytesIO(payload))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise BadFileError(key, f"unreadable parquet ({err})") from err
    return conform(key, table)
