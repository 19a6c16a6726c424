"""`make stack` as a user runs it (`churn-platform stack`): seeds, serves the UI, ingests the seed
through the sensor, stops cleanly on SIGTERM, and comes back with its state (runs, cursors, files)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from churn_platform.dev import topology
from churn_platform.dev.production_stack import ProductionStack, StackError, log_tail
from churn_platform.settings import DEFAULT_DATA_DIR, PROJECT_ROOT, Settings
from churn_platform_tests.dagster_ui import SENSOR_QUERY, DagsterUI, wait_for
from churn_platform_tests.helpers import free_port

pytestmark = pytest.mark.stack

SEED = ["--users", "300", "--days", "3"]
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 180
STOP_TIMEOUT = 60


def _start(root: Path, ports: topology.Ports, log: Path) -> subprocess.Popen:
    args = [f"--{name.replace('_', '-')}-port={port}" for name, port in vars(ports).items()]
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "churn-platform"), "stack", "--root", str(root), *SEED, *args],
            cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _processes_under(root: Path) -> str:
    return subprocess.run(["pgrep", "-af", str(root)], capture_output=True, text=True).stdout.strip()


def _stop(proc: subprocess.Popen, log: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"make stack did not stop within {STOP_TIMEOUT} s of SIGTERM:\n{log_tail(log)}")


def test_make_stack_serves_the_seed_stops_on_sigterm_and_restarts_with_its_state():
    root = Path(tempfile.mkdtemp(prefix="churn-make-stack-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must reach its cluster
    ports = topology.Ports(ui=free_port(), s3=free_port(), mlflow=free_port(), postgres=free_port(),
                           code_server=free_port())
    log = root.parent / f"{root.name}.log"
    ui = DagsterUI(url=f"http://127.0.0.1:{ports.ui}")
    try:
        started = time.monotonic()
        proc = _start(root, ports, log)
        ui.wait_until_loaded(lambda: proc.poll() is None, lambda: log_tail(log), STARTUP_TIMEOUT)
        ui_ready = time.monotonic() - started
        [first] = wait_for("the sensor's run over the seeded days",
                           lambda: ui.runs(tags={"dagster/sensor_name": "s3_landing_sensor"}), RUN_TIMEOUT)
        ui.assert_run_succeeded(first["runId"], RUN_TIMEOUT)
        print(f"make stack: UI ready {ui_ready:.1f} s, first sensor run done {time.monotonic() - started:.1f} s")

        assert _stop(proc, log) == 0, log_tail(log)
        assert not any(_listening(port) for port in vars(ports).values()), "a port still answers after stop"
        assert not _processes_under(root), f"processes left after stop:\n{_processes_under(root)}"

        restarted = time.time()
        proc = _start(root, ports, log)
        ui.wait_until_loaded(lambda: proc.poll() is None, lambda: log_tail(log), STARTUP_TIMEOUT)
        assert "landing demo data" not in log.read_text().split("restored", 1)[-1], "seeded twice"
        runs = ui.runs()
        assert first["runId"] in {run["runId"] for run in runs}, "runs did not survive the restart"
        # The sensor's first tick after the restart reads its cursor from PostgreSQL: nothing is new.
        wait_for("a sensor tick after the restart", lambda: _sensor_ticked_after(ui, restarted), RUN_TIMEOUT)
        assert len(ui.runs(tags={"dagster/sensor_name": "s3_landing_sensor"})) == 1, "the seed was ingested twice"
        assert _stop(proc, log) == 0, log_tail(log)
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(root)], check=False)


def _sensor_ticked_after(ui: DagsterUI, since: float) -> bool:
    selector = {**ui.repository_selector(), "sensorName": "s3_landing_sensor"}
    ticks = ui.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]["ticks"]
    return any(t["timestamp"] > since and t["status"] in ("SUCCESS", "SKIPPED") for t in ticks)


def test_make_stack_refuses_a_port_in_use_naming_make_dev(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = ProductionStack(topology.Layout(tmp_path), "http://127.0.0.1:1",
                                topology.Ports(ui=port, s3=free_port(), mlflow=free_port(),
                                               postgres=free_port(), code_server=free_port()))
        with pytest.raises(StackError, match=rf"UI {port}.*`make dev`"):
            stack.check_ports_free()


def test_make_stack_and_make_dev_keep_their_state_apart():
    dev = Settings.from_env({})
    stack = topology.Layout(DEFAULT_DATA_DIR / "stack")
    dev_state = {dev.warehouse_path, dev.dagster_home, dev.data_dir / "s3", dev.data_dir / "mlflow.db"}
    stack_state = {stack.data_dir / "warehouse.duckdb", stack.dagster_home, stack.s3_mirror, stack.postgres}
    for dev_path in dev_state:
        for stack_path in stack_state:
            assert not stack_path.is_relative_to(dev_path) and not dev_path.is_relative_to(stack_path), (
                dev_path, stack_path)
