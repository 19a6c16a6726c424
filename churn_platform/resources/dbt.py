"""The dbt project and the dbt CLI resource (no @dbt_assets here, so tools can import it).

The manifest is prepared by `make install` (`dbt parse`), never at import.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from churn_platform.resources.dbt_in_process import dbt_in_process
from churn_platform.resources.warehouse import Warehouse
from churn_platform.settings import DBT_PROJECT_DIR
from churn_platform.warehouse_lock import HeldLock

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))


@contextmanager
def _environ(values: dict[str, str], clear: list[str] = ()) -> Iterator[None]:
    """os.environ with `values` set and the names in `clear` unset unless among `values`."""
    saved = {name: os.environ.get(name) for name in [*values, *clear]}
    for name in clear:
        os.environ.pop(name, None)
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
    """DbtCliResource that stays offline, knows where the warehouse is, waits its turn on it
    and keeps dbt's parse from one call to the next.

    The stock resource runs `dbt --version` before every invocation, and that command looks
    up the newest dbt release on PyPI (a network call, 1 s timeout, ~2 s of process start).
    The installed dbt-core is the dbt we run, so its package metadata is the answer.
    The profile reads CHURN_DATA_DIR (and, on Spark, the session's JVM options); Settings may not
    come from os.environ (tests, tools), so the resource hands its own values to the dbt process.
    dbt writes the warehouse but does not wait for DuckDB's file lock, so every dbt process
    runs under the warehouse's write lock.

    dbt re-parses the whole project unless it finds a parse saved for the same profile in its
    target folder, and dagster-dbt gives each call a new target folder. The parse is only saved
    by `make install` for the default data folder, so each deployment keeps its own
    (`parse_cache`): seeded into every call's folder, refreshed from it after a call that parsed.
    The partition window reaches dbt through CHURN_DBT_WINDOW, which the parse does not read,
    so a new window does not invalidate it as `--vars` would.
    With `in_process`, dbt runs inside the caller's process (dbt_in_process.py) instead of
    starting its own.
    """

    data_dir: str
    warehouse: Warehouse
    in_process: bool = False

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    @property
    def parse_cache(self) -> Path:
        return Path(self.data_dir) / "dbt" / f"partial_parse.{self.target or 'default'}.msgpack"

    def cli(self, args, *, window: dict[str, str] | None = None, **kwargs):
        """Start dbt once the write lock is ours, with `window` (var name -> ISO date) for the
        partitioned models; the lock is released when dbt is done, however the caller consumes
        the (lazy) invocation."""
        target_path = Path(self.project_dir) / (
            kwargs.pop("target_path", None) or self._get_unique_target_path(context=kwargs.get("context")))
        seeded = _seed_parse(self.parse_cache, target_path)
        env = {"CHURN_DATA_DIR": self.data_dir, **self.warehouse.dbt_environment()}
        if window:
            env[WINDOW_ENV] = json.dumps(window, sort_keys=True)
        lock = self.warehouse.lock(exclusive=True)
        try:
            with _environ(env, clear=[WINDOW_ENV]), dbt_in_process() if self.in_process else nullcontext():
                invocation = super().cli(args, target_path=target_path, **kwargs)
        except BaseException:
            lock.release()
            raise
        exit_args = (invocation.process, lock, target_path, self.parse_cache, seeded)
        if invocation.process.poll() is None:
            threading.Thread(target=_on_exit, args=exit_args, name="dbt-warehouse-lock", daemon=True).start()
        else:  # dbt ran in this process and is done
            _on_exit(*exit_args)
        return invocation


WINDOW_ENV = "CHURN_DBT_WINDOW"
PARSE_FILE = "partial_parse.msgpack"


def _seed_parse(cache: Path, target_path: Path) -> float | None:
    """Copy the deployment's saved parse into a call's target folder; its mtime, if any."""
    if not cache.exists():
        return None
    target_path.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cache, target_path / PARSE_FILE)
    return (target_path / PARSE_FILE).stat().st_mtime


def _keep_parse(target_path: Path, cache: Path, seeded: float | None) -> None:
    """After a call that (re-)parsed, its parse becomes the deployment's: written beside the
    cache and renamed over it, so a concurrent reader sees the old file or the new one."""
    parsed = target_path / PARSE_FILE
    if not parsed.exists() or parsed.stat().st_mtime == seeded:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.copy2(parsed, partial)
    os.replace(partial, cache)


def _on_exit(process: subprocess.Popen, lock: HeldLock, target_path: Path, cache: Path,
             seeded: float | None) -> None:
    try:
        if process.wait() == 0:
            _keep_parse(target_path, cache, seeded)
    finally:
        lock.release()
