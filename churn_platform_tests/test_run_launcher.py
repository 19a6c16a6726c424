"""The single-host launcher's health check tells a live worker from a dead or replaced one."""

import subprocess
import time

from churn_platform.run_launcher import worker_alive


def test_a_live_worker_is_alive_and_a_killed_one_is_not():
    started_at = time.time()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert worker_alive(proc.pid, started_at)
    finally:
        proc.kill()
        proc.wait()
    assert not worker_alive(proc.pid, started_at)


def test_an_unreaped_worker_counts_as_dead():
    started_at = time.time()
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while worker_alive(proc.pid, started_at) and time.monotonic() < deadline:
        time.sleep(0.05)  # exits at once; we have not reaped it, so it is a zombie
    assert not worker_alive(proc.pid, started_at)
    proc.wait()


def test_a_pid_reused_by_a_newer_process_is_not_the_worker():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        reported_long_before = time.time() - 3600  # the worker with this pid was reported an hour ago
        assert not worker_alive(proc.pid, reported_long_before)
    finally:
        proc.kill()
        proc.wait()


def test_run_monitoring_hears_failed_for_a_run_whose_worker_is_gone():
    import os

    import dagster as dg
    from dagster._core.events import EngineEventData
    from dagster._core.launcher import WorkerStatus

    from churn_platform.run_launcher import SingleHostRunLauncher

    @dg.op
    def step():
        return 1

    @dg.job
    def job():
        step()

    with dg.instance_for_test() as instance:
        launcher = SingleHostRunLauncher()
        launcher.register_instance(instance)
        run = instance.create_run_for_job(job)
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING  # no worker yet
        instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", run,
                                     EngineEventData.in_process(os.getpid()))
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING  # we are alive
        # Another engine event naming a pid (a step process that ended) is not the worker.
        instance.report_engine_event("Executing steps in process (pid: 999999).", run,
                                     EngineEventData.in_process(999999))
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        proc = subprocess.Popen(["true"])
        proc.wait()
        instance.report_engine_event(f"Started process for run (pid: {proc.pid}).", run,
                                     EngineEventData.in_process(proc.pid))
        result = launcher.check_run_worker_health(run)
        assert result.status == WorkerStatus.FAILED and f"pid {proc.pid}" in result.msg
