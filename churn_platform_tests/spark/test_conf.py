"""The Spark engine's settings: one engine switch, dbt's session and ours configured alike."""


import pytest
import yaml

from churn_platform.ingest.staging import StagingArea
from churn_platform.resources import build_resources
from churn_platform.resources.spark_jobs import EmrServerlessSparkJobs
from churn_platform.resources.spark_warehouse import SparkWarehouse
from churn_platform.settings import DBT_PROJECT_DIR, Settings
from churn_platform.spark.conf import QUICK_JVM, local_spark_conf, read_conf_file, spark_conf
from churn_platform.spark.tables import contract_schema
from churn_platform.events import RAW_EVENTS_SCHEMA


def _render_profile(target: dict, env: dict[str, str]) -> dict[str, str]:
    """The target's session parameters as dbt renders them with `env`."""
    import jinja2

    def env_var(name, default=None):
        return env.get(name, default)

    return {key: jinja2.Template(str(value)).render(env_var=env_var)
            for key, value in target["server_side_parameters"].items()}


def test_dbt_session_uses_the_same_catalog_and_settings_as_the_platform(tmp_path):
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    target = profile["churn_platform"]["outputs"]["spark"]
    warehouse = build_resources(Settings.from_env({"CHURN_DATA_DIR": str(tmp_path), "CHURN_ENGINE": "spark"}))["warehouse"]
    # As the platform runs dbt (its JVM options passed on), and as a user runs it by hand.
    platform = _render_profile(target, {"CHURN_DATA_DIR": str(tmp_path), **warehouse.dbt_environment()})
    assert platform == local_spark_conf(tmp_path / "spark")
    by_hand = _render_profile(target, {"CHURN_DATA_DIR": str(tmp_path)})
    assert by_hand == local_spark_conf(tmp_path / "spark", class_archive=False)
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


def test_quick_jvm_reaches_every_local_spark_process(tmp_path):
    """CHURN_SPARK_QUICK_JVM=1: the SQL sessions and jobs (conf) and dbt's session (its JVM options)."""
    env = {"CHURN_DATA_DIR": str(tmp_path), "CHURN_ENGINE": "spark"}
    default = build_resources(Settings.from_env(env))["warehouse"]
    quick = build_resources(Settings.from_env({**env, "CHURN_SPARK_QUICK_JVM": "1"}))["warehouse"]
    assert QUICK_JVM not in default.conf["spark.driver.extraJavaOptions"]
    assert QUICK_JVM in quick.conf["spark.driver.extraJavaOptions"]
    assert QUICK_JVM in quick.dbt_environment()["CHURN_SPARK_DRIVER_JAVA_OPTIONS"]
    assert QUICK_JVM in quick.job_environment()["CHURN_SPARK_CONF"]
    assert {k: v for k, v in quick.conf.items() if k != "spark.driver.extraJavaOptions"} == {
        k: v for k, v in default.conf.items() if k != "spark.driver.extraJavaOptions"}
    with pytest.raises(ValueError, match="CHURN_SPARK_QUICK_JVM='yes'"):
        Settings.from_env({**env, "CHURN_SPARK_QUICK_JVM": "yes"})


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


EMR_ENV = {
    "CHURN_ENGINE": "spark",
    "CHURN_SPARK_JOBS": "emr-serverless",
    "CHURN_EMR_APPLICATION_ID": "00abc",
    "CHURN_EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/churn",
    "CHURN_SPARK_CODE_URI": "s3://churn-code/v1/",
    "CHURN_PIPES_BUCKET": "churn-pipes",
    "CHURN_SPARK_STAGING_URI": "s3://churn-staging/spark",
}


def test_emr_serverless_launches_the_same_jobs_with_the_cluster_settings(tmp_path):
    """Configured, not run (no cluster here): the request EMR Serverless would get."""
    settings = Settings.from_env({"CHURN_DATA_DIR": str(tmp_path), **EMR_ENV})
    resources = build_resources(settings)
    jobs, warehouse = resources["spark_jobs"], resources["warehouse"]
    assert isinstance(jobs, EmrServerlessSparkJobs)
    assert warehouse.staging_root() == "s3://churn-staging/spark"
    params = jobs.start_job_run_params("ingest_job", {"spark.sql.session.timeZone": "UTC"})
    submit = params["jobDriver"]["sparkSubmit"]
    assert params["applicationId"] == "00abc" and params["executionRoleArn"].endswith("role/churn")
    assert submit["entryPoint"] == "s3://churn-code/v1/ingest_job.py"
    assert submit["sparkSubmitParameters"].startswith("--py-files s3://churn-code/v1/churn_platform.zip ")
    assert "--conf spark.sql.session.timeZone=UTC" in submit["sparkSubmitParameters"]
    assert "--conf spark.emr-serverless.driverEnv.CHURN_PIPES_MESSAGES=s3" in submit["sparkSubmitParameters"]


@pytest.mark.parametrize("dropped, message", [
    ("CHURN_PIPES_BUCKET", "needs CHURN_PIPES_BUCKET"),
    ("CHURN_SPARK_STAGING_URI", "needs CHURN_SPARK_STAGING_URI=s3://"),
])
def test_emr_serverless_without_its_settings_refuses_to_load(tmp_path, dropped, message):
    env = {k: v for k, v in EMR_ENV.items() if k != dropped}
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"CHURN_DATA_DIR": str(tmp_path), **env})


def test_staging_area_on_s3_puts_and_clears(s3_endpoint, monkeypatch):
    """The cluster's staging area, on the real loopback S3 server."""
    from churn_platform.dev.s3 import ensure_bucket, s3_client

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = s3_client(s3_endpoint)
    ensure_bucket(client, "staging-test")
    staging = StagingArea("s3://staging-test/spark/", "run-1")
    assert staging.put("2024-01-01.parquet", b"rows") == "s3://staging-test/spark/run-1/2024-01-01.parquet"
    body = client.get_object(Bucket="staging-test", Key="spark/run-1/2024-01-01.parquet")["Body"].read()
    assert body == b"rows"
    staging.clear()
    assert client.list_objects_v2(Bucket="staging-test", Prefix="spark/").get("KeyCount") == 0
