"""The code location loads, every job/schedule/sensor resolves, and the graph is what we expect."""

import json
import subprocess
import sys

import dagster as dg

from churn_platform.constants import PROMOTION_DECISION, PROMOTION_POOL
from churn_platform.definitions import build_definitions

EXPECTED_GRAPH = {
    "raw_events": ("daily", []),
    "user_daily_activity": ("daily", ["raw_events"]),
    "user_features": ("weekly", ["user_daily_activity"]),
    "churn_labels": ("weekly", ["user_daily_activity", "user_features"]),
    "churn_model": ("weekly", ["churn_labels", "user_features"]),
    "promotion_decision": ("weekly", ["churn_model"]),
    "churn_scores": ("weekly", ["promotion_decision", "user_features"]),
    "realized_performance": ("weekly", ["churn_labels", "churn_scores"]),
}
PYTHON_CHECKS = {
    "raw_events": {"raw_events_schema", "raw_events_duplicate_rate", "raw_events_rejected_rate"},
    "user_daily_activity": {"user_daily_activity_matches_raw_events"},
    "user_features": {"user_features_min_population", "user_features_max_null_rate"},
    "churn_labels": {"churn_labels_min_population", "churn_labels_churn_rate"},
    "churn_model": {"churn_model_auc_floor"},
    "churn_scores": {"churn_scores_population_drift"},
    "realized_performance": {"realized_performance_auc"},
}


def test_every_job_and_sensor_resolves(settings):
    defs = build_definitions(settings)
    for job in defs.jobs:
        defs.resolve_job_def(job.name)
    assert not defs.schedules  # the Monday cadence lives in the model's automation condition
    assert {s.name for s in defs.sensors} == {"churn_automation", "s3_landing_sensor", "run_failure_alert",
                                                "freshness_alert"}
    for sensor in defs.sensors:
        defs.resolve_sensor_def(sensor.name)
    defs.resolve_all_job_defs()


def test_asset_graph_snapshot(settings):
    graph = build_definitions(settings).resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        kind = {dg.DailyPartitionsDefinition: "daily", dg.WeeklyPartitionsDefinition: "weekly"}[
            type(node.partitions_def)
        ]
        actual[key.to_user_string()] = (kind, sorted(k.to_user_string() for k in node.parent_keys))
    assert actual == EXPECTED_GRAPH
    checks: dict[str, set[str]] = {}
    for check_key in graph.asset_check_keys:
        checks.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    for asset, names in PYTHON_CHECKS.items():
        assert names <= checks[asset]
    # dbt tests arrive as checks too, e.g. the one-row-per-key test of the published tables.
    assert "unique_combination_of_columns_user_features_as_of_date__user_id" in checks["user_features"]
    assert "unique_combination_of_columns_churn_labels_as_of_date__user_id" in checks["churn_labels"]


def test_promotion_decisions_take_turns(settings):
    """Each compares against the current champion, so they have their own pool (limit 1)."""
    graph = build_definitions(settings).resolve_asset_graph()
    assert graph.get(dg.AssetKey(PROMOTION_DECISION)).assets_def.op.pool == PROMOTION_POOL


def test_every_asset_after_raw_events_has_an_automation_condition(settings):
    graph = build_definitions(settings).resolve_asset_graph()
    automated = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).automation_condition}
    assert automated == set(EXPECTED_GRAPH) - {"raw_events"}  # raw_events: the landing sensor's


def _loaded_modules(statement: str, modules: tuple[str, ...], env: dict[str, str]) -> dict[str, bool]:
    code = f"import sys, json; {statement}; print(json.dumps({{m: m in sys.modules for m in {modules!r}}}))"
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_has_no_side_effects(tmp_path):
    """Importing the code location opens nothing, reads no state, leaves MLflow and sklearn unloaded."""
    data_dir = tmp_path / "never-created"
    env = {"CHURN_DATA_DIR": str(data_dir), "PATH": ""}
    loaded = _loaded_modules("import churn_platform.definitions", ("mlflow", "sklearn", "moto"), env)
    assert loaded == {"mlflow": False, "sklearn": False, "moto": False}
    assert not data_dir.exists()


def test_local_tools_do_not_import_the_code_location(tmp_path):
    """`churn-platform seed` needs boto3 and the generator, not Dagster, dbt, Slack or moto."""
    heavy = ("dagster", "dagster_dbt", "dagster_aws", "dagster_slack", "moto", "mlflow")
    env = {"CHURN_DATA_DIR": str(tmp_path), "PATH": ""}
    assert not any(_loaded_modules("import churn_platform", heavy, env).values())
    assert not any(_loaded_modules("import churn_platform.dev.cli, churn_platform.dev.landing, "
                                   "churn_platform.dev.generator", heavy, env).values())
