"""Weekly features and labels end to end: landed S3 data -> Dagster -> dbt -> published tables."""

import dataclasses
import datetime as dt

import dagster as dg
import duckdb
import pytest

from churn_platform.checks.feature_gates import null_rate_gate
from churn_platform.quality import feature_metrics
from churn_platform_tests.helpers import DEMO_END, K, K_MINUS_4, failure_message, materialize, query


def test_features_and_labels_publish_the_contract_tables(demo_settings):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(demo_settings, ["user_features"], K_MINUS_4, instance).success
    result = materialize(demo_settings, ["user_features", "churn_labels"], K, instance)
    assert result.success

    schema = {
        table: query(demo_settings, "SELECT column_name, data_type FROM information_schema.columns "
                     "WHERE table_name = ? ORDER BY ordinal_position", [table])
        for table in ("user_features", "churn_labels")
    }
    assert schema["user_features"] == [
        ("as_of_date", "DATE"), ("user_id", "BIGINT"), ("days_since_last_login", "INTEGER"),
        ("payment_attempts_30d", "INTEGER"), ("payment_failures_30d", "INTEGER"),
        ("payment_failure_rate", "DOUBLE"), ("avg_session_length_7d", "DOUBLE"),
        ("support_tickets_90d", "INTEGER"), ("plan_tier", "VARCHAR"),
    ]
    assert schema["churn_labels"] == [("as_of_date", "DATE"), ("user_id", "BIGINT"), ("churned", "INTEGER")]

    per_date = dict(query(demo_settings, "SELECT as_of_date, count(*) FROM user_features GROUP BY 1"))
    assert set(per_date) == {dt.date(2024, 4, 28), DEMO_END}
    assert query(demo_settings, "SELECT count(*) - count(DISTINCT (as_of_date, user_id)) FROM user_features") == [(0,)]
    labels = query(demo_settings, "SELECT as_of_date, count(*), avg(churned) FROM churn_labels GROUP BY 1")
    assert len(labels) == 1 and labels[0][0] == dt.date(2024, 4, 28)
    assert labels[0][1] == per_date[dt.date(2024, 4, 28)]  # the labelled population is the feature rows
    assert 0.05 <= labels[0][2] <= 0.2

    metadata = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["user_features"]["population"].value == per_date[DEMO_END]
    assert 0 < metadata["churn_labels"]["churn_rate"].value < 1
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and [e.check_name for e in evaluations if not e.passed] == []
    assert {"user_features_min_population", "churn_labels_churn_rate"} <= {e.check_name for e in evaluations}

    # Identical rows; doubles compared to 1e-9 (DuckDB's parallel sums may differ in the last bit).
    snapshot = ("SELECT * REPLACE (round(payment_failure_rate, 9) AS payment_failure_rate, "
                "round(avg_session_length_7d, 9) AS avg_session_length_7d) FROM user_features ORDER BY ALL")
    before = query(demo_settings, snapshot)
    assert materialize(demo_settings, ["user_features"], K, instance).success
    assert query(demo_settings, snapshot) == before


def test_labels_are_refused_before_their_window_has_landed(demo_settings):
    with duckdb.connect(str(demo_settings.warehouse_path)) as con:
        con.execute("DELETE FROM ingested_days WHERE event_date = '2024-05-25'")
    assert materialize(demo_settings, ["user_features"], K_MINUS_4).success
    result = materialize(demo_settings, ["churn_labels"], K)
    assert not result.success
    message = failure_message(result, "churn_labels_dbt")
    assert "labels for as-of 2024-04-28..2024-04-28 cannot be built yet" in message
    assert "raw_events not ingested for 1 day(s): 2024-05-25" in message
    assert query(demo_settings, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'churn_labels'") == [(0,)]


def test_labels_need_the_features_of_their_as_of_date(demo_settings):
    result = materialize(demo_settings, ["churn_labels"], K)
    assert not result.success
    assert "user_features not materialized for as-of 2024-04-28" in failure_message(result, "churn_labels_dbt")


def test_population_gate_blocks_downstream(demo_settings):
    strict = demo_settings.with_overrides(
        gate_thresholds=dataclasses.replace(demo_settings.gate_thresholds, min_training_rows=1_000_000)
    )
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(demo_settings, ["user_features"], K_MINUS_4, instance).success
    result = materialize(strict, ["user_features", "churn_labels", "churn_model"], K, instance)
    assert not result.success
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {"user_features_min_population"}
    gate = failed["user_features_min_population"]
    assert gate.metadata["min_rows"].value == 1_000_000
    assert 0 < gate.metadata["population (2024-05-26)"].value < 1_000_000
    executed = {e.step_key for e in result.all_events if e.is_step_start}
    assert "user_features_dbt" in executed  # the gate ran on what it built...
    assert not executed & {"churn_labels_dbt", "churn_model"}  # ...and blocked everything downstream


def test_null_rate_gate_reports_the_column(demo_settings):
    assert materialize(demo_settings, ["user_features"], K).success
    with duckdb.connect(str(demo_settings.warehouse_path)) as con:
        assert null_rate_gate(feature_metrics(con, [DEMO_END]), max_null=0.05).passed
        con.execute("ALTER TABLE user_features ALTER avg_session_length_7d DROP NOT NULL")
        con.execute("UPDATE user_features SET avg_session_length_7d = NULL WHERE user_id % 10 = 0")
        evaluation = null_rate_gate(feature_metrics(con, [DEMO_END]), max_null=0.05)
    assert not evaluation.passed
    assert evaluation.metadata["null_rate_avg_session_length_7d (2024-05-26)"].value == pytest.approx(0.1, abs=0.02)


def test_features_refuse_a_window_with_missing_days(demo_settings):
    with duckdb.connect(str(demo_settings.warehouse_path)) as con:
        con.execute("DELETE FROM user_daily_activity WHERE activity_date = '2024-03-01'")
    result = materialize(demo_settings, ["user_features"], K)
    assert not result.success
    assert "user_daily_activity not built for 1 day(s): 2024-03-01" in failure_message(result, "user_features_dbt")


def test_a_range_run_records_each_weeks_gate_verdict(demo_settings):
    """Dagster keeps a partitioned check's result per week only for one-week runs; a range run
    logs each week's own verdict, which automation reads (a range as automation launches it)."""
    from churn_platform.definitions import build_definitions

    weeks = [(dt.date.fromisoformat(K_MINUS_4) + dt.timedelta(weeks=i)).isoformat() for i in range(5)]
    instance = dg.DagsterInstance.ephemeral()
    job = build_definitions(demo_settings).resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("user_features")})
    result = job.execute_in_process(instance=instance, tags={
        "dagster/asset_partition_range_start": weeks[0], "dagster/asset_partition_range_end": weeks[-1]})
    assert result.success
    population = dg.AssetCheckKey(dg.AssetKey("user_features"), "user_features_min_population")
    history = instance.event_log_storage.get_asset_check_execution_history(population, limit=20)
    by_week = {r.evaluation.partition: r.evaluation.passed for r in history
               if r.evaluation is not None and getattr(r.evaluation, "partition", None)}
    assert by_week == dict.fromkeys(weeks, True)
