"""The dbt project and the dbt CLI resource (no @dbt_assets here, so tools can import it).

The manifest is prepared by `make install` (`dbt parse`), never at import.
"""

import importlib.metadata
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from churn_platform.resources.warehouse import Warehouse
from churn_platform.settings import DBT_PROJECT_DIR
from churn_platform.warehouse_lock import HeldLock

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class OfflineDbtCliResource(DbtCliResource):
    """DbtCliResource that stays offline, knows where the warehouse is and waits its turn on it.

    The stock resource runs `dbt --version` before every invocation, and that command looks
    up the newest dbt release on PyPI (a network call, 1 s timeout, ~2 s of process start).
    The installed dbt-core is the dbt we run, so its package metadata is the answer.
    The profile reads CHURN_DATA_DIR (and, on Spark, the session's JVM options); Settings may not
    come from os.environ (tests, tools), so the resource hands its own values to the dbt process.
    dbt writes the warehouse but does not wait for DuckDB's file lock, so every dbt process
    runs under the warehouse's write lock.
    """

    data_dir: str
    warehouse: Warehouse

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def cli(self, args, **kwargs):
        """Start dbt once the write lock is ours; the lock is released when the dbt process
        exits, however the caller consumes the (lazy) invocation."""
        lock = self.warehouse.lock(exclusive=True)
        try:
            with _environ({"CHURN_DATA_DIR": self.data_dir, **self.warehouse.dbt_environment()}):
                invocation = super().cli(args, **kwargs)
        except BaseException:
            lock.release()
            raise
        threading.Thread(
            target=_release_on_exit, args=(invocation.process, lock), name="dbt-warehouse-lock", daemon=True
        ).start()
        return invocation


def _release_on_exit(process: subprocess.Popen, lock: HeldLock) -> None:
    try:
        process.wait()
    finally:
        lock.release()
