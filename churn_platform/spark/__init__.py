"""The Spark engine (CHURN_ENGINE=spark): the same tables as DuckDB, built by dbt-spark and
PySpark jobs. Nothing here imports pyspark at module level: the DuckDB engine never needs it."""
