"""dbt run inside the calling process, in the shape of the `subprocess.Popen` dagster-dbt reads.

A dbt process pays ~4-5 s before its first query (interpreter, dbt's imports, the adapter, the
profile): most of a weekly partition's dbt time at scale M. The run worker has already
imported dbt for dagster-dbt, so the same call in-process costs ~1.5 s. Only for engines whose
adapter lets go of the warehouse when the call ends (DuckDB closes its file when dbt closes
its last connection); a local Spark session would stay in the worker and hold the catalog.

dbt keeps its flags, adapters and invocation context in module globals, so calls in one
process take turns, and the environment dagster-dbt builds for a child process is os.environ
for the length of the call. Afterwards the warehouse is closed (`_close_duckdb`), as a dbt
process would leave it by exiting.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import SimpleNamespace

from dagster_dbt.core import dbt_cli_invocation

_TURN = threading.Lock()


class InProcessDbt:
    """A dbt invocation that has already run, with the Popen surface DbtCliInvocation uses:
    `args`, `stdout` (dbt's console log: JSON lines, as the dbt command prints them with
    dagster-dbt's settings), `returncode`, `wait`, `poll`, `send_signal`."""

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, **_popen_options):
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

        self.args = list(args)
        console = io.StringIO()
        with _TURN, _exact_environ(env if env is not None else os.environ):
            capture_stdout_logs(console)
            try:
                result = dbtRunner().invoke(self.args[1:])
            finally:
                stop_capture_stdout_logs()
                _close_duckdb()
        self.returncode = exit_code(result.success, result.exception)
        self.stdout = io.BytesIO(console.getvalue().encode())

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode

    def poll(self) -> int:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Nothing to signal: the call finished before this object was returned."""


def exit_code(success: bool, exception: BaseException | None) -> int:
    """The dbt command's exit code for a dbtRunner result: 0, 1 (a node failed), 2 (dbt failed)."""
    if success:
        return 0
    return 1 if exception is None else 2


@contextmanager
def dbt_in_process() -> Iterator[None]:
    """dagster-dbt starts its next dbt call in this process instead of a child process."""
    stock = dbt_cli_invocation.subprocess
    dbt_cli_invocation.subprocess = SimpleNamespace(Popen=InProcessDbt, PIPE=stock.PIPE, STDOUT=stock.STDOUT)
    try:
        yield
    finally:
        dbt_cli_invocation.subprocess = stock


def _close_duckdb() -> None:
    """Close dbt-duckdb's database. Its environment is a process-wide singleton that can keep
    the file open after dbt closed its last connection; open, it would refuse this process's
    read-only connections (DuckDB: one configuration per file and process) and lock out other
    processes. The next dbt call opens a new one."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


@contextmanager
def _exact_environ(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ is `env` (nothing more) for the block, then what it was."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
