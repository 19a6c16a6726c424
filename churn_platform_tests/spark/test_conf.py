"""The Spark engine's settings: one engine switch, dbt's session and ours configured alike."""

from pathlib import Path

import pytest
import yaml

from churn_platform.resources import build_resources
from churn_platform.resources.spark_warehouse import SparkWarehouse
from churn_platform.settings import DBT_PROJECT_DIR, Settings
from churn_platform.spark.conf import local_spark_conf, read_conf_file, spark_conf
from churn_platform.spark.tables import contract_schema
from churn_platform.events import RAW_EVENTS_SCHEMA


def test_dbt_session_uses_the_same_catalog_and_settings_as_the_platform(tmp_path):
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    target = profile["churn_platform"]["outputs"]["spark"]
    rendered = {
        key: str(value).replace("{{ env_var('CHURN_DATA_DIR') }}", str(tmp_path))
        for key, value in target["server_side_parameters"].items()
    }
    assert rendered == local_spark_conf(tmp_path / "spark")
    assert target["method"] == "session" and target["schema"] == "churn"


def test_engine_is_chosen_in_one_place(tmp_path):
    duck = Settings.from_env({"CHURN_DATA_DIR": str(tmp_path)})
    spark = Settings.from_env({"CHURN_DATA_DIR": str(tmp_path), "CHURN_ENGINE": "spark"})
    assert (duck.engine, duck.dbt_target) == ("duckdb", "duckdb")
    assert (spark.engine, spark.dbt_target) == ("spark", "spark")
    resources = build_resources(spark)
    assert isinstance(resources["warehouse"], SparkWarehouse) and "spark_jobs" in resources
    assert resources["dbt"].target == "spark"
    assert "spark_jobs" not in build_resources(duck)
    with pytest.raises(ValueError, match="CHURN_ENGINE='postgres'"):
        Settings.from_env({"CHURN_DATA_DIR": str(tmp_path), "CHURN_ENGINE": "postgres"})


def test_a_cluster_conf_file_overrides_the_local_settings(tmp_path):
    conf_file = tmp_path / "spark-defaults.conf"
    conf_file.write_text("# cluster\nspark.master yarn\nspark.sql.warehouse.dir s3://lake/churn\n")
    conf = spark_conf(tmp_path / "spark", str(conf_file))
    assert conf["spark.master"] == "yarn" and conf["spark.sql.warehouse.dir"] == "s3://lake/churn"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    conf_file.write_text("spark.master\n")
    with pytest.raises(ValueError, match="spark-defaults.conf:1"):
        read_conf_file(conf_file)


def test_spark_types_read_back_as_the_contract():
    describe = [(name, {"VARCHAR": "string", "BIGINT": "bigint", "TIMESTAMP": "timestamp", "DOUBLE": "double",
                        "DATE": "date"}[t], None) for name, t in RAW_EVENTS_SCHEMA.items()]
    described = describe + [("# Partition Information", "", ""), ("event_date", "date", None)]
    assert contract_schema(described) == RAW_EVENTS_SCHEMA
