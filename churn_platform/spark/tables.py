"""The tables the platform writes outside dbt, on Spark: the same columns as on DuckDB
(resources/warehouse.py), parquet, partitioned by their date so a day is replaced whole."""

from __future__ import annotations

from churn_platform.constants import USER_DAILY_ACTIVITY
from churn_platform.events import EVENT_DATE_COLUMN, RAW_EVENTS_SCHEMA
from churn_platform.ingest import daily_activity

# Contract SQL types (DuckDB names) and what Spark calls them.
SPARK_TYPES = {"VARCHAR": "STRING", "BIGINT": "BIGINT", "INTEGER": "INT", "DOUBLE": "DOUBLE",
               "TIMESTAMP": "TIMESTAMP", "DATE": "DATE"}
CONTRACT_TYPES = {spark.lower(): contract for contract, spark in SPARK_TYPES.items()}


def _table(name: str, columns: dict[str, str], partition: str) -> str:
    """Spark keeps partition columns last; the others keep the contract's order."""
    ordered = {k: v for k, v in columns.items() if k != partition} | {partition: columns[partition]}
    body = ", ".join(f"{column} {SPARK_TYPES[sql_type]}" for column, sql_type in ordered.items())
    return f"CREATE TABLE IF NOT EXISTS {name} ({body}) USING parquet PARTITIONED BY ({partition})"


_DAY = EVENT_DATE_COLUMN[0]
_REJECTED = {_DAY: "DATE", "reason": "VARCHAR", **{k: v for k, v in RAW_EVENTS_SCHEMA.items() if k != _DAY}}
RAW_TABLES_DDL = (
    _table("raw_events", RAW_EVENTS_SCHEMA, _DAY),
    _table("raw_events_rejected", _REJECTED, _DAY),
    _table("ingested_days", {_DAY: "DATE", "files": "INTEGER", "rows": "BIGINT", "ingested_at": "TIMESTAMP"}, _DAY),
)
DAILY_ACTIVITY_DDL = _table(USER_DAILY_ACTIVITY, daily_activity.SCHEMA, daily_activity.ACTIVITY_DATE)
CHURN_SCORES_DDL = _table(
    "churn_scores",
    {"as_of_date": "DATE", "user_id": "BIGINT", "churn_probability": "DOUBLE", "model_version": "VARCHAR",
     "risk_decile": "INTEGER", "reason_1": "VARCHAR", "reason_2": "VARCHAR", "reason_3": "VARCHAR"},
    "as_of_date",
)


def contract_schema(describe_rows: list[tuple]) -> dict[str, str]:
    """`DESCRIBE TABLE` rows as {column: contract type}, for the schema check."""
    schema = {}
    for name, data_type, *_ in describe_rows:
        if not name or name.startswith("#"):
            break  # the partition section repeats the partition columns
        schema[name] = CONTRACT_TYPES.get(data_type.lower(), data_type)
    return schema
