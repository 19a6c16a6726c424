"""The offline dbt resource: no `dbt --version` network lookup, dbt writes the configured
warehouse, and waits for the warehouse instead of failing on DuckDB's lock."""

import importlib.metadata
import subprocess
import time

import pytest
from packaging import version

from churn_platform.resources.dbt import DBT_EXECUTABLE, DBT_PROJECT, OfflineDbtCliResource
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.settings import Settings
from churn_platform.warehouse_lock import WarehouseLockTimeout, acquire_lock
from churn_platform_tests.helpers import warehouse_held

HOLD_SECONDS = 5.0  # longer than the resource takes to start dbt (~3 s): a dbt not waiting is caught


def _resource(data_dir) -> OfflineDbtCliResource:
    warehouse = DuckDBWarehouse(path=str(Settings.from_env({"CHURN_DATA_DIR": str(data_dir)}).warehouse_path))
    return OfflineDbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE, target="duckdb",
                                 data_dir=str(data_dir), warehouse=warehouse)


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
    """Compile user_daily_activity for `window`: its date filter, and dbt's debug log."""
    invocation = dbt.cli(["compile", "--select", "user_daily_activity"], window=window, raise_on_error=False)
    invocation.wait()
    assert invocation.is_successful(), invocation.get_error()
    sql = next(invocation.target_path.rglob("compiled/**/user_daily_activity.sql")).read_text()
    [where] = [line.strip() for line in sql.splitlines() if "event_date between" in line]
    return where, (invocation.target_path / "dbt.log").read_text()


def test_a_new_window_reuses_the_deployments_saved_parse(tmp_path):
    """The window reaches dbt through CHURN_DBT_WINDOW: the first call of a data folder parses
    and saves the parse, the next one, with another window, reuses it (no full re-parse)."""
    dbt = _resource(tmp_path / "data")
    assert not dbt.parse_cache.exists()
    where, _ = _compiled_window(dbt, {"min_date": "2024-03-01", "max_date": "2024-03-02"})
    assert "'2024-03-01'" in where and "'2024-03-02'" in where
    assert dbt.parse_cache.exists()

    where, log = _compiled_window(dbt, {"min_date": "2024-04-01", "max_date": "2024-04-03"})
    assert "'2024-04-01'" in where and "'2024-04-03'" in where
    assert "Unable to do partial parsing" not in log
    assert "Nothing changed, skipping partial parsing" in log
