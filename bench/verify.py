"""Are the floor's and the pandas path's features and labels the platform's? Row-by-row diffs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from churn_platform.constants import FEATURE_COLUMNS, LABEL_COLUMN

FLOAT_COLUMNS = ("payment_failure_rate", "avg_session_length_7d")


def _same(column: str) -> str:
    if column in FLOAT_COLUMNS:  # equal up to rounding: sums in another order differ in the last bits
        return (f"(p.{column} IS NULL AND o.{column} IS NULL) "
                f"OR abs(p.{column} - o.{column}) <= 1e-9 * greatest(1.0, abs(p.{column}))")
    return f"p.{column} IS NOT DISTINCT FROM o.{column}"


def _diff(con, platform_sql: str, other_sql: str, columns: tuple[str, ...]) -> dict[str, int]:
    """Rows on each side, rows on one side only, and per column the users whose values differ."""
    differing = ", ".join(
        f"count(*) FILTER (WHERE p.user_id = o.user_id AND NOT ({_same(c)})) AS {c}" for c in columns
    )
    row = con.execute(
        f"""
        WITH p AS ({platform_sql}), o AS ({other_sql})
        SELECT count(p.user_id) AS platform_rows, count(o.user_id) AS other_rows,
               count(*) FILTER (WHERE o.user_id IS NULL) AS only_platform,
               count(*) FILTER (WHERE p.user_id IS NULL) AS only_other,
               {differing}
        FROM p FULL JOIN o ON p.user_id = o.user_id
        """
    ).fetchone()
    names = [d[0] for d in con.description]
    return dict(zip(names, row))


def mismatches(diff: dict[str, int]) -> int:
    """Rows that are not identical on both sides."""
    counts = {k: v for k, v in diff.items() if k not in ("platform_rows", "other_rows")}
    return sum(counts.values())


def compare(warehouse: Path, floor_db: Path, pandas_training_set: Path | None,
            as_of: dt.date, label_as_of: dt.date) -> dict[str, dict[str, int]]:
    """Diffs of the floor's features (A) and labels (A - 28), and of the pandas training set (A - 28)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{warehouse}' AS wh (READ_ONLY)")
    con.execute(f"ATTACH '{floor_db}' AS fl (READ_ONLY)")
    result = {
        "floor features": _diff(
            con, f"SELECT * FROM wh.user_features WHERE as_of_date = DATE '{as_of}'",
            "SELECT * FROM fl.features_labels WHERE in_features", FEATURE_COLUMNS),
        "floor labels": _diff(
            con, f"SELECT * FROM wh.churn_labels WHERE as_of_date = DATE '{label_as_of}'",
            "SELECT * FROM fl.features_labels WHERE in_labels", (LABEL_COLUMN,)),
    }
    if pandas_training_set is not None:
        result["pandas training set"] = _diff(
            con,
            f"SELECT * FROM wh.user_features JOIN wh.churn_labels USING (as_of_date, user_id) "
            f"WHERE as_of_date = DATE '{label_as_of}'",
            f"SELECT * FROM read_parquet('{pandas_training_set}')", (*FEATURE_COLUMNS, LABEL_COLUMN))
    con.close()
    return result
