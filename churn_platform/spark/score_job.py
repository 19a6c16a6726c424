"""Spark scoring: the champion over one as-of date's features, launched through Dagster Pipes.

The orchestrator loads the champion through its verified path (skops, our trusted types:
churn_platform/ml/artifacts.py) and hands it over as a skops file in the staging area; this job loads it with the
same trusted types and applies it per Arrow batch on the executors (mapInPandas), so scoring
scales with users. Not `mlflow.pyfunc.spark_udf`: that loads through the flavor's own loader,
which trusts the types the artifact lists, and calls `predict`, not `predict_proba`.
"""

from __future__ import annotations

from churn_platform.spark.tables import CHURN_SCORES_DDL

BATCH_SCHEMA = ("as_of_date DATE, user_id BIGINT, churn_probability DOUBLE, model_version STRING, "
                "reason_1 STRING, reason_2 STRING, reason_3 STRING")
ADDED_COLUMNS = {"risk_decile": "INT", "reason_1": "STRING", "reason_2": "STRING", "reason_3": "STRING"}


def _scorer(model, model_version: str):
    def score(batches):
        from churn_platform.ml.scoring import score_batch

        for features in batches:
            yield score_batch(model, features, model_version)

    return score


def _add_missing_columns(spark) -> None:
    """A table from before risk deciles and reasons gains their columns (older rows read NULL)."""
    missing = [f"{name} {kind}" for name, kind in ADDED_COLUMNS.items() if name not in spark.table("churn_scores").columns]
    if missing:
        spark.sql(f"ALTER TABLE churn_scores ADD COLUMNS ({', '.join(missing)})")


def main() -> None:
    import skops.io

    from churn_platform.ml.scoring import DECILE_SQL
    from churn_platform.ml.training import SKOPS_TRUSTED_TYPES
    from churn_platform.spark.pipes import job_context

    with job_context() as (pipes, spark):
        as_of = pipes.get_extra("as_of_date")
        version = pipes.get_extra("model_version")
        model_bytes = spark.sparkContext.binaryFiles(pipes.get_extra("model_uri")).collect()[0][1]
        model = skops.io.loads(model_bytes, trusted=list(SKOPS_TRUSTED_TYPES))
        spark.sql(CHURN_SCORES_DDL)
        _add_missing_columns(spark)
        features = spark.table("user_features").where(f"as_of_date = DATE '{as_of}'")
        features.mapInPandas(_scorer(model, version), BATCH_SCHEMA).createOrReplaceTempView("scores")
        spark.sql(
            "INSERT OVERWRITE TABLE churn_scores PARTITION (as_of_date) "
            f"SELECT user_id, churn_probability, model_version, {DECILE_SQL} AS risk_decile, "
            "reason_1, reason_2, reason_3, as_of_date FROM scores"
        )
        rows, mean, above = spark.sql(
            "SELECT count(*), avg(churn_probability), avg(CASE WHEN churn_probability > 0.5 THEN 1.0 ELSE 0.0 END) "
            f"FROM churn_scores WHERE as_of_date = DATE '{as_of}'"
        ).collect()[0]
        pipes.log.info(f"scored {rows} users at as-of {as_of} with model v{version}")
        pipes.report_custom_message({"rows": rows, "mean_churn_probability": mean,
                                     "share_above_0_5": None if above is None else float(above)})


if __name__ == "__main__":
    main()
