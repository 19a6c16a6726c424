"""A class-data-sharing archive of the local Spark's classes, made once by `make install-spark`.

Every local Spark process (a dbt run, a SQL session, a Pipes job) is a new JVM that loads
Spark's, Hive's and Derby's classes anew: most of its ~8 s start. With the classes loaded from
this archive (JDK CDS: `-XX:SharedArchiveFile`) a session starts about a third faster; the
code that runs afterwards is unchanged. A JVM that finds the archive stale (another JDK, other
jars) says so on stderr and runs without it.

`python -m churn_platform.spark.class_archive` runs a small Spark workload (a Hive catalog,
a partitioned parquet table overwritten, read with a window, collected through Arrow) in a
JVM that writes the classes it loaded to the archive at exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ARCHIVE = Path(sys.prefix) / "share" / "churn-platform" / "spark-classes.jsa"
# JVM warnings go to stderr: a SQL session's stdout is its protocol stream.
_QUIET_STDOUT = "-Xlog:disable -Xlog:all=warning:stderr"


def java_options() -> str:
    """The driver JVM options that use the archive, if it was made ("" otherwise)."""
    return f"-XX:SharedArchiveFile={ARCHIVE} {_QUIET_STDOUT}" if ARCHIVE.exists() else ""


_WORKLOAD = """
import sys
from pathlib import Path
from churn_platform.spark.conf import local_spark_conf, session

spark_dir, archive = Path(sys.argv[1]), sys.argv[2]
conf = local_spark_conf(spark_dir, class_archive=False)
conf["spark.driver.extraJavaOptions"] += f" -XX:ArchiveClassesAtExit={archive} -Xlog:cds=off -Xlog:cds+dynamic=off"
spark = session(conf)
spark.sql("CREATE TABLE t (id BIGINT, day DATE) USING parquet PARTITIONED BY (day)")
spark.sql("INSERT OVERWRITE TABLE t PARTITION (day) SELECT id, DATE '2024-01-01' + CAST(id % 3 AS INT) FROM range(1000)")
spark.sql("SELECT day, id, row_number() OVER (PARTITION BY day ORDER BY id DESC) AS n FROM t").toPandas()
jvm = spark.sparkContext._gateway.proc
spark.stop()
jvm.stdin.close()  # the JVM exits when its stdin closes, writing the archive on its way out
jvm.wait()
"""


def build(archive: Path = ARCHIVE) -> Path:
    """Make the archive (replacing any old one whole); its path."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="churn-spark-cds-") as work:
        log = Path(work) / "spark.log"
        with log.open("w") as stderr:
            done = subprocess.run([sys.executable, "-c", _WORKLOAD, str(Path(work) / "spark"), str(partial)],
                                  cwd=work, stdout=stderr, stderr=stderr)
        if done.returncode != 0 or not partial.exists():
            raise RuntimeError(f"the Spark class archive was not written (exit {done.returncode}):\n"
                               f"{log.read_text()[-4000:]}")
    os.replace(partial, archive)
    return archive


if __name__ == "__main__":
    path = build()
    print(f"Spark class archive: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
