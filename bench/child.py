"""Run one bench task in a fresh Python process and read its wall time and peak RSS.

The platform runs steps in the calling process (in-process executor) and dbt as a
subprocess of it, so every measured run gets its own process. Peak RSS is VmHWM from
/proc: the worker reports its own at exit, and its subprocesses (dbt) are sampled every
POLL_SECONDS while they run. Not getrusage(RUSAGE_CHILDREN) nor os.wait4: on exec, Linux
records the RSS high-water mark of the pre-exec image, which for a (v)forked child is its
parent's, so a 10 MB child of a 1 GB parent reports 1 GB.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from churn_platform.settings import PROJECT_ROOT

LOG_TAIL_LINES = 30
POLL_SECONDS = 0.1


class ChildFailed(RuntimeError):
    """The task raised or the process died; the message holds the log tail."""


@dataclass(frozen=True)
class ChildRun:
    """One task in one process."""

    seconds: float  # the measured operation, timed inside the child
    process_seconds: float  # spawn to exit: interpreter start, imports, setup, the operation
    peak_rss_mb: float  # the larger of self_rss_mb and subprocess_rss_mb
    self_rss_mb: float
    subprocess_rss_mb: float  # the largest of its subprocesses (dbt), 0 when none
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Measurement:
    """Repeated runs of one task: medians of times, max of memory."""

    runs: list[ChildRun]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def process_seconds(self) -> float:
        return statistics.median(r.process_seconds for r in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    @property
    def subprocess_rss_mb(self) -> float:
        return max(r.subprocess_rss_mb for r in self.runs)

    @property
    def details(self) -> dict:
        """The last run's details (counts, metadata); see step_seconds for times."""
        return self.runs[-1].details

    @property
    def step_seconds(self) -> dict[str, float]:
        """Median seconds of each Dagster step over the runs."""
        steps = self.runs[-1].details.get("steps", {})
        return {step: statistics.median(r.details["steps"][step] for r in self.runs) for step in steps}


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _vm_hwm_mb(pid: int) -> float:
    status = _read(f"/proc/{pid}/status") or b""
    for line in status.splitlines():
        if line.startswith(b"VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    return [int(c) for t in tasks for c in (_read(f"/proc/{pid}/task/{t}/children") or b"").split()]


class TreePeaks:
    """Peak VmHWM per process of a process tree, sampled while it runs.

    A process is sampled only once it has exec'd (its cmdline differs from its parent's):
    between fork and exec it still maps its parent's memory.
    """

    def __init__(self, root: int):
        self.root = root
        self.peaks: dict[int, float] = {}

    def sample(self) -> None:
        stack = [(self.root, _read(f"/proc/{os.getpid()}/cmdline"))]
        while stack:
            pid, parent_cmdline = stack.pop()
            cmdline = _read(f"/proc/{pid}/cmdline")
            if cmdline and cmdline != parent_cmdline:
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), _vm_hwm_mb(pid))
            stack += [(child, cmdline) for child in _children(pid)]

    @property
    def root_mb(self) -> float:
        return self.peaks.get(self.root, 0.0)

    @property
    def descendants_mb(self) -> float:
        return max((mb for pid, mb in self.peaks.items() if pid != self.root), default=0.0)


def _address_space_limit(limit_bytes: int | None):
    if limit_bytes is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def run_child(task: str, params: dict, env: dict[str, str], workdir: Path,
              memory_limit_bytes: int | None = None, profile: Path | None = None) -> ChildRun:
    """Run bench.worker's `task` in a new process (cwd `workdir`); raise ChildFailed on error."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{task}.result.json"
    log = workdir / f"{task}.log"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.worker", task, json.dumps(params), str(out)]
    if profile is not None:
        command += ["--profile", str(profile)]
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))}
    started = time.perf_counter()
    with log.open("w") as log_file:
        proc = subprocess.Popen(command, env=env, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=_address_space_limit(memory_limit_bytes), start_new_session=True)
        peaks = TreePeaks(proc.pid)
        try:
            while proc.poll() is None:
                peaks.sample()
                time.sleep(POLL_SECONDS)
        except BaseException:  # interrupted: take the child's whole process group down with us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    process_seconds = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        raise ChildFailed(f"{task} exited with {proc.returncode} after {process_seconds:.1f} s, "
                          f"peak RSS at least {max(peaks.root_mb, peaks.descendants_mb):,.0f} MB:\n{tail}")
    report = json.loads(out.read_text())
    self_mb = max(report["self_rss_mb"], peaks.root_mb)
    return ChildRun(
        seconds=report["details"].pop("seconds"),
        process_seconds=process_seconds,
        peak_rss_mb=max(self_mb, peaks.descendants_mb),
        self_rss_mb=self_mb,
        subprocess_rss_mb=peaks.descendants_mb,
        details=report["details"],
    )
