"""A Spark SQL session in a child process, answering one statement per line on stdin.

The orchestrator's own questions of the Spark warehouse (readiness, gate statistics, the
training set) go through it: one JVM per warehouse connection, not per query, and never in
the Dagster process itself (a JVM there would keep the local Derby catalog open across steps).
Requests are JSON lines {"sql", "args"}; each answer is a JSON line, the rows in an Arrow file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path


def decode_args(args: list) -> list:
    """Positional parameters: dates travel as {"date": "YYYY-MM-DD"}."""
    return [dt.date.fromisoformat(a["date"]) if isinstance(a, dict) else a for a in args]


def encode_args(args) -> list:
    return [{"date": a.isoformat()} if isinstance(a, dt.date) else a for a in args]


def _answer(spark, request: dict, out_dir: Path, number: int) -> dict:
    import pyarrow as pa

    frame = spark.sql(request["sql"], args=decode_args(request.get("args") or []) or None)
    columns = frame.columns
    pdf = frame.toPandas()
    path = out_dir / f"result-{number}.arrow"
    table = pa.Table.from_pandas(pdf, preserve_index=False)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return {"path": str(path), "columns": columns}


def main() -> None:
    from churn_platform.spark.conf import session

    conf = json.loads(sys.argv[1])
    # Only answers on the protocol stream: it moves to a private descriptor, and stdout (ours
    # and the JVM's, which inherits it) becomes stderr.
    requests, answers = sys.stdin, os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    spark = session(conf)
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    with tempfile.TemporaryDirectory(prefix="churn-spark-sql-") as out_dir:
        for number, line in enumerate(requests):
            request = json.loads(line)
            try:
                answer = _answer(spark, request, Path(out_dir), number)
            except Exception as err:  # reported to the caller, who raises it with the SQL
                answer = {"error": f"{type(err).__name__}: {err}"}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    spark.stop()


if __name__ == "__main__":
    main()
