"""The offline dbt resource: no `dbt --version` network lookup, dbt writes the configured
warehouse, and waits for the warehouse instead of failing on DuckDB's lock."""

import importlib.metadata
import os
import subprocess
import sys
import time

import duckdb

import pytest
from packaging import version

from churn_platform.ingest.daily_activity import DUCKDB_DDL
from churn_platform.resources.dbt import DBT_EXECUTABLE, DBT_PROJECT, OfflineDbtCliResource
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.settings import Settings
from churn_platform.warehouse_lock import WarehouseLockTimeout, acquire_lock
from churn_platform_tests.helpers import warehouse_held

HOLD_SECONDS = 5.0  # longer than the resource takes to start dbt (~3 s): a dbt not waiting is caught


def _resource(data_dir, in_process: bool = False) -> OfflineDbtCliResource:
    warehouse = DuckDBWarehouse(path=str(Settings.from_env({"CHURN_DATA_DIR": str(data_dir)}).warehouse_path))
    return OfflineDbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE, target="duckdb",
                                 data_dir=str(data_dir), warehouse=warehouse, in_process=in_process)


def test_version_comes_from_the_installed_package_without_a_subprocess(tmp_path, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "check_output", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    assert _resource(tmp_path)._cli_version == version.parse(importlib.metadata.version("dbt-core"))


def test_dbt_runs_against_the_resources_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "not-this-one"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    invocation = _resource(data_dir).cli(["debug"], raise_on_error=False)
    invocation.wait()
    assert invocation.is_successful(), invocation.get_error()
    assert (data_dir / "warehouse.duckdb").exists()
    assert not (tmp_path / "not-this-one").exists()


def test_dbt_waits_for_another_processs_writer_and_holds_the_lock_while_it_runs(tmp_path):
    dbt = _resource(tmp_path / "data")
    with warehouse_held(dbt.warehouse.path, "write", HOLD_SECONDS) as holder:
        invocation = dbt.cli(["debug"], raise_on_error=False)  # `debug` connects to the warehouse
        started = time.time()
        with pytest.raises(WarehouseLockTimeout):  # held by the running dbt process, not just the call
            acquire_lock(dbt.warehouse.path, exclusive=False, timeout_seconds=0.1)
        released = float(holder.stdout.readline().split()[1])
        invocation.wait()
    assert released <= started  # dbt started only once the other process let go
    assert invocation.is_successful(), invocation.get_error()
    with acquire_lock(dbt.warehouse.path, exclusive=True, timeout_seconds=5):
        pass  # and the lock went with the dbt process


def _compiled_window(dbt: OfflineDbtCliResource, window: dict[str, str]) -> tuple[str, str]:
    """Compile user_features for `window`: its SQL, and dbt's debug log."""
    invocation = dbt.cli(["compile", "--select", "user_features"], window=window, raise_on_error=False)
    invocation.wait()
    assert invocation.is_successful(), invocation.get_error()
    sql = next(invocation.target_path.rglob("compiled/**/user_features.sql")).read_text()
    return sql, (invocation.target_path / "dbt.log").read_text()


@pytest.mark.parametrize("in_process", [False, True], ids=["process", "in-process"])
def test_a_new_window_reuses_the_deployments_saved_parse(tmp_path, in_process):
    """The window reaches dbt through CHURN_DBT_WINDOW: the first call of a data folder parses
    and saves the parse, the next one, with another window, reuses it (no full re-parse)."""
    dbt = _resource(tmp_path / "data", in_process)
    assert not dbt.parse_cache.exists()
    sql, _ = _compiled_window(dbt, {"min_as_of": "2024-03-03", "max_as_of": "2024-03-10"})
    assert "'2024-03-03'" in sql and "'2024-03-10'" in sql and "'2024-04-07'" not in sql
    assert dbt.parse_cache.exists()

    sql, log = _compiled_window(dbt, {"min_as_of": "2024-04-07", "max_as_of": "2024-04-14"})
    assert "'2024-04-07'" in sql and "'2024-04-14'" in sql and "'2024-03-03'" not in sql
    assert "Unable to do partial parsing" not in log
    assert "Nothing changed, skipping partial parsing" in log


WEEKS = {"min_as_of": "2024-03-03", "max_as_of": "2024-03-10"}


def _table_built_in_process(dbt: OfflineDbtCliResource, select: str):
    before = dict(os.environ)
    invocation = dbt.cli(["build", "--select", select], window=WEEKS, raise_on_error=False)
    invocation.wait()
    assert dict(os.environ) == before  # dbt's environment was the call's, not left behind
    return invocation


def test_in_process_dbt_builds_in_this_process_and_leaves_the_warehouse_closed(tmp_path, monkeypatch):
    """No dbt process; the run's events and artifacts are dagster-dbt's as from the command;
    afterwards this process reads the warehouse read-only and another process can write it."""
    dbt = _resource(tmp_path / "data", in_process=True)
    with dbt.warehouse.connect() as con:  # an empty daily aggregate: the model builds 0 rows
        con.execute(DUCKDB_DDL)

    def no_process(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    invocation = _table_built_in_process(dbt, "user_features")
    monkeypatch.undo()

    assert invocation.is_successful(), invocation.get_error()
    assert invocation.process.returncode == 0
    assert invocation.get_artifact("run_results.json")["results"][0]["status"] == "success"
    with duckdb.connect(dbt.warehouse.path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM user_features").fetchone() == (0,)
    writer = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                             dbt.warehouse.path], capture_output=True, text=True)
    assert writer.returncode == 0, writer.stderr  # DuckDB's file lock is not held by this process


def test_in_process_dbt_reports_a_failed_model_with_dbts_exit_code_and_message(tmp_path):
    """A model that fails (its source table is missing) fails the call loudly, as the command would."""
    dbt = _resource(tmp_path / "data", in_process=True)
    invocation = _table_built_in_process(dbt, "user_features")
    assert not invocation.is_successful()
    assert invocation.process.returncode == 1
    assert "user_daily_activity" in str(invocation.get_error())
    with pytest.raises(Exception, match="user_daily_activity"):
        dbt.cli(["build", "--select", "user_features"], window=WEEKS).wait()
    with acquire_lock(dbt.warehouse.path, exclusive=True, timeout_seconds=5):
        pass  # a failed call let go of the warehouse too


def test_in_process_dbt_waits_for_another_processs_writer(tmp_path):
    dbt = _resource(tmp_path / "data", in_process=True)
    with warehouse_held(dbt.warehouse.path, "write", HOLD_SECONDS) as holder:
        invocation = dbt.cli(["debug"], raise_on_error=False)
        finished = time.time()
        released = float(holder.stdout.readline().split()[1])
    assert released <= finished - 0.5  # dbt ran after the other process let go, and took time to
    assert invocation.is_successful(), invocation.get_error()
