"""Where the Spark engine keeps its tables and catalog, and how its sessions are configured.

Locally a Spark session is `local[2]` with a Derby metastore and parquet tables under
CHURN_DATA_DIR/spark (never in the working directory). Derby admits one process at a time, so
every local Spark process runs under the warehouse lock (resources/spark_warehouse.py).
A cluster replaces these settings with its own (CHURN_SPARK_CONF_FILE, README "Spark").
dbt_project/profiles.yml repeats the local values for dbt's session (the JVM options come from
here, through CHURN_SPARK_DRIVER_JAVA_OPTIONS); a test keeps them equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from churn_platform.spark.class_archive import java_options

SPARK_DATABASE = "churn"  # the schema (Spark database) of every platform table


# HotSpot's first compiler only: a JVM that lives seconds (the local engine's SQL sessions, dbt
# runs and jobs on small data) starts ~25 % sooner; long computations run slower without C2.
QUICK_JVM = "-XX:TieredStopAtLevel=1"


def local_spark_conf(spark_dir: Path, class_archive: bool = True, quick_jvm: bool = False) -> dict[str, str]:
    """Session settings of the local engine, rooted at `spark_dir`; its JVMs load their classes
    from the install's class archive when there is one (spark/class_archive.py), and compile
    with C1 only when `quick_jvm` (CHURN_SPARK_QUICK_JVM)."""
    options = " ".join(filter(None, [java_options() if class_archive else "", QUICK_JVM if quick_jvm else ""]))
    return {
        "spark.master": "local[2]",
        "spark.app.name": "churn-platform",
        # local[2] runs every task inside the driver: its heap is all the engine's memory
        # (Spark's default, 1g, spills a million users' windows to disk again and again).
        "spark.driver.memory": "4g",
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={spark_dir / 'metastore_db'};create=true",
        # derby.log beside the metastore; every JVM clock in UTC (event dates are UTC days).
        "spark.driver.extraJavaOptions": f"{options} -Dderby.system.home={spark_dir} -Duser.timezone=UTC".lstrip(),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Small data per partition on two cores: 200 shuffle partitions would be 200 tiny tasks.
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # The embedded Derby catalog cannot filter partitions by a DATE key ("Filtering is
        # supported only on partition keys of type string"): list them instead. Cluster
        # catalogs filter; their conf file leaves this out.
        "spark.sql.hive.metastorePartitionPruningFallbackOnException": "true",
    }


def spark_conf(spark_dir: Path, conf_file: str | None = None, quick_jvm: bool = False) -> dict[str, str]:
    """The local settings, overridden by a cluster's `key value` lines (spark-defaults format)."""
    conf = local_spark_conf(spark_dir, quick_jvm=quick_jvm)
    if conf_file:
        conf.update(read_conf_file(Path(conf_file)))
    return conf


def read_conf_file(path: Path) -> dict[str, str]:
    conf = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if not value.strip():
            raise ValueError(f"{path}:{number}: expected `key value`, got {line!r}")
        conf[key] = value.strip()
    return conf


def session(conf: Mapping[str, str]):
    """A Hive-enabled SparkSession with `conf` (the catalog the tables live in)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {SPARK_DATABASE}")
    spark.catalog.setCurrentDatabase(SPARK_DATABASE)
    return spark


def encode_conf(conf: Mapping[str, str]) -> str:
    return json.dumps(dict(conf), sort_keys=True)
