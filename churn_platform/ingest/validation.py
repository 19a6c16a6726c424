"""File-level validation of landed parquet files (docs/contract.md §2).

A file that cannot be read, or whose columns are missing or of the wrong type, fails the
whole partition: `BadFileError` names the key and the problem. Row-level rules live in
SQL (`load.py`) so they are counted, not silently dropped.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn_platform.events import EVENT_COLUMNS, FIELDS_BY_NAME, SOURCE_KEY_COLUMN


class BadFileError(ValueError):
    """A landed object that cannot be loaded at all."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


LANDED_DAY = "landed_day"  # the UTC day a landed row was landed for: the rules' day (rules.py)

# Text columns with a handful of values (docs/contract.md §2) stay dictionary-encoded from the
# parquet file to DuckDB: a 180k-row file decodes in 15 ms instead of 38 ms, and the row rules
# compare each distinct value once. The values are still plain strings in the warehouse.
DICTIONARY_COLUMNS = ("event_type", "plan_tier", "payment_status")
TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class LandedFile:
    key: str
    table: pa.Table  # contract columns, contract types, plus source_key
    extra_columns: tuple[str, ...]


@dataclass(frozen=True)
class LandedDay:
    """A day's landed files, read and conformed: what one day of an ingest loads."""

    day: dt.date
    files: list[LandedFile]

    @property
    def rows(self) -> int:
        return sum(f.table.num_rows for f in self.files)

    def table(self) -> pa.Table:
        table = pa.concat_tables([f.table for f in self.files])
        return table.append_column(LANDED_DAY, pa.repeat(pa.scalar(self.day, pa.date32()), table.num_rows))


def _to_utc_naive(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as naive UTC microseconds (arrow stores instants as UTC; naive input is UTC)."""
    return pc.cast(column, pa.timestamp("us"), safe=False)


def _value_type(arrow_type: pa.DataType) -> pa.DataType:
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _repeated(value: str, rows: int) -> pa.DictionaryArray:
    """`value` on every row, stored once."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value], pa.string()))


def conform(key: str, table: pa.Table) -> LandedFile:
    """Check a file's columns against the contract and cast them to the contract types
    (DICTIONARY_COLUMNS and source_key dictionary-encoded)."""
    missing = [c for c in EVENT_COLUMNS if c not in table.column_names]
    if missing:
        raise BadFileError(key, f"missing required column(s) {missing}")
    wrong = {
        c: str(table.schema.field(c).type)
        for c in EVENT_COLUMNS
        if not FIELDS_BY_NAME[c].accepts(_value_type(table.schema.field(c).type))
    }
    if wrong:
        expected = {c: str(FIELDS_BY_NAME[c].arrow_type) for c in wrong}
        raise BadFileError(key, f"wrong column type(s) {wrong}, expected {expected}")
    columns = {}
    for name in EVENT_COLUMNS:
        column = table.column(name)
        try:
            target = TEXT_DICTIONARY if name in DICTIONARY_COLUMNS else FIELDS_BY_NAME[name].arrow_type
            columns[name] = _to_utc_naive(column) if pa.types.is_timestamp(target) else column.cast(target)
        except pa.ArrowInvalid as err:
            raise BadFileError(key, f"column {name!r} does not fit {FIELDS_BY_NAME[name].arrow_type} ({err})") from err
    columns[SOURCE_KEY_COLUMN[0]] = _repeated(key, table.num_rows)
    extra = tuple(c for c in table.column_names if c not in EVENT_COLUMNS)
    return LandedFile(key=key, table=pa.table(columns), extra_columns=extra)


def read_landed_file(key: str, payload: bytes) -> LandedFile:
    """Parse one landed object; any parquet error becomes a BadFileError naming the key."""
    try:
        table = pq.read_table(io.BytesIO(payload), read_dictionary=DICTIONARY_COLUMNS)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise BadFileError(key, f"unreadable parquet ({err})") from err
    try:
        return conform(key, table)
    except BadFileError:
        raise
    except (pa.ArrowException, KeyError, ValueError, TypeError, IndexError) as err:
        # A shape conform did not foresee (e.g. a duplicated column name) is still this file's fault.
        raise BadFileError(key, f"does not fit the event contract ({type(err).__name__}: {err})") from err
