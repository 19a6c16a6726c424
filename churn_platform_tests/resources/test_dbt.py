"""The offline dbt resource: no `dbt --version` network lookup, and dbt writes the configured warehouse."""

import importlib.metadata
import subprocess

from packaging import version

from churn_platform.resources.dbt import DBT_EXECUTABLE, DBT_PROJECT, OfflineDbtCliResource


def _resource(data_dir) -> OfflineDbtCliResource:
    return OfflineDbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE, target="local",
                                 data_dir=str(data_dir))


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
