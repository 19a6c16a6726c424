"""The single-host run launcher: Dagster's DefaultRunLauncher, plus a worker health check.

With the DefaultRunLauncher each run is a process started by the code server, and run
monitoring cannot ask whether that process still lives (the launcher has no health check). A
run whose worker died together with the code server (a crashed container, `kill -9` of its
process group) then stays STARTED until its `dagster/max_runtime`, holding its pool slots.
On one host the daemon can see the worker itself: the run's "Started process for run
(pid: N)" event names it. `deploy/dagster.yaml` uses this launcher; multi-host launchers
(Docker, Kubernetes) have their own checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

# A process started this long after the run's "Started process" event is not the run's worker
# (its pid was reused): the event is written right after the worker starts.
_PID_REUSE_SLACK_SECONDS = 5.0
_WORKER_STARTED = "Started process for run"  # the event the code server writes for each worker


def _process_start_time(pid: int) -> float | None:
    """Epoch seconds the process started (Linux /proc), or None if there is no such process."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] == "Z":  # a zombie: exited, not yet reaped by the code server
        return None
    ticks_since_boot = int(fields[19])  # field 22 of stat; fields[0] is field 3
    boot_time = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
    return boot_time + ticks_since_boot / os.sysconf("SC_CLK_TCK")


def worker_alive(pid: int, started_at: float) -> bool:
    """Whether `pid` is still the process that started at `started_at` (epoch seconds)."""
    if not Path("/proc/self/stat").exists():  # not Linux: no start time to compare
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    process_start = _process_start_time(pid)
    return process_start is not None and process_start <= started_at + _PID_REUSE_SLACK_SECONDS


class SingleHostRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose workers run monitoring can check (daemon and workers share a host)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        started = self._worker_started(run.run_id)
        if started is None:  # not started yet: run monitoring's start timeout covers this phase
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the worker has not reported its pid yet")
        pid, started_at = started
        if worker_alive(pid, started_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run worker (pid {pid}) is gone without ending the run: it was killed, or died "
            "with the code server that started it",
        )

    def _worker_started(self, run_id: str) -> tuple[int, float] | None:
        """The newest worker pid of the run and when it was reported."""
        records = self._instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        for record in reversed(records):
            event = record.dagster_event
            if event is None or not (event.message or "").startswith(_WORKER_STARTED):
                continue  # other engine events name step processes' pids, which end normally
            pid = (event.engine_event_data.metadata or {}).get("pid")
            if pid is not None:
                return int(pid.value), record.timestamp
        return None
