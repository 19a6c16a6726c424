"""Settings resolve once from the environment; gate thresholds are typed and validated at load."""

import math

import pytest

from churn_platform.gate_thresholds import GateThresholds
from churn_platform.settings import Settings


def test_local_defaults_stay_inside_the_data_dir(tmp_path):
    settings = Settings.from_env({"CHURN_DATA_DIR": str(tmp_path), "CHURN_START_DATE": "2024-01-01"})
    assert settings.environment == "local"
    assert settings.warehouse_path == tmp_path / "warehouse.duckdb"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.gate_thresholds == GateThresholds()


def test_production_has_no_local_endpoint():
    settings = Settings.from_env({"CHURN_ENV": "prod", "CHURN_START_DATE": "2024-01-01"})
    assert settings.s3_endpoint_url is None and not settings.local_s3_credentials


def test_unknown_environment_is_an_error():
    with pytest.raises(ValueError, match="CHURN_ENV"):
        Settings.from_env({"CHURN_ENV": "staging"})


def test_gate_overrides_are_typed():
    gates = GateThresholds.from_env({"CHURN_GATE_MIN_TRAINING_ROWS": "1000", "CHURN_GATE_MIN_AUC": "0.65"})
    assert gates.min_training_rows == 1000 and isinstance(gates.min_training_rows, int)
    assert gates.min_auc == 0.65 and gates.max_null_rate == 0.05


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("MAX_NULL_RATE", "abc", "not a number"),
        ("MAX_NULL_RATE", "nan", "not a finite number"),
        ("MIN_AUC_DELTA", "inf", "not a finite number"),
        ("MAX_REJECTED_RATE", "1.5", r"must lie in \[0, 1\]"),
        ("MIN_CHURN_RATE", "-0.1", r"must lie in \[0, 1\]"),
        ("MIN_AUC", "0.5", r"\(0.5, 1\]"),
        ("MIN_TRAINING_ROWS", "10.5", "positive integer"),
        ("MIN_TRAINING_ROWS", "0", "positive integer"),
        ("MIN_CHURN_RATE", "0.6", "above CHURN_GATE_MAX_CHURN_RATE"),
    ],
)
def test_a_bad_gate_value_is_a_clear_error_at_load(name, value, message):
    with pytest.raises(ValueError, match=f"CHURN_GATE_{name}.*{message}|{message}"):
        Settings.from_env({f"CHURN_GATE_{name}": value, "CHURN_START_DATE": "2024-01-01"})


def test_thresholds_are_frozen():
    with pytest.raises(AttributeError):
        GateThresholds().min_auc = 0.9  # type: ignore[misc]
    assert math.isfinite(GateThresholds().min_auc)


def test_the_landing_sensor_interval_is_a_positive_number_of_seconds(tmp_path):
    env = {"CHURN_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).landing_sensor_interval_seconds == 30
    assert Settings.from_env({**env, "CHURN_LANDING_SENSOR_INTERVAL_SECONDS": "5"}).landing_sensor_interval_seconds == 5
    for bad in ("0", "-3", "soon"):
        with pytest.raises(ValueError, match="CHURN_LANDING_SENSOR_INTERVAL_SECONDS"):
            Settings.from_env({**env, "CHURN_LANDING_SENSOR_INTERVAL_SECONDS": bad})


def test_scores_go_to_the_landing_bucket_unless_configured(tmp_path):
    env = {"CHURN_DATA_DIR": str(tmp_path), "CHURN_LANDING_BUCKET": "landing"}
    default = Settings.from_env(env)
    assert (default.scores_bucket, default.scores_prefix) == ("landing", "scores/")
    custom = Settings.from_env({**env, "CHURN_SCORES_BUCKET": "crm-exports", "CHURN_SCORES_PREFIX": "churn/"})
    assert (custom.scores_bucket, custom.scores_prefix) == ("crm-exports", "churn/")
