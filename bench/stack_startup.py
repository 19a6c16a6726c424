"""`python -m bench.stack_startup` (`make bench-stack`): time `make stack` as a new user meets it.

Starts `churn-platform stack` in a fresh folder (a new PostgreSQL cluster, empty buckets, the
default demo seed) on free ports, and prints: seconds to the seed landed, to the UI serving the
loaded code location, to the sensor's first ingest run finished; then the same after a restart
(the cluster and files exist). Stops the stack with SIGTERM and times that too.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from churn_platform.dev.topology import Ports
from churn_platform.settings import PROJECT_ROOT

WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus locationOrLoadError { __typename } } } } }"
RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
TIMEOUT = 1800


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(url: str, query: str) -> dict | None:
    try:
        response = requests.post(f"{url}/graphql", json={"query": query}, timeout=10)
        return response.json()["data"] if response.ok else None
    except requests.RequestException:
        return None


def _wait(what: str, probe, proc: subprocess.Popen, started: float) -> float:
    while not probe():
        if proc.poll() is not None:
            sys.exit(f"make stack exited with {proc.returncode} before {what}")
        if time.monotonic() - started > TIMEOUT:
            sys.exit(f"{what}: not within {TIMEOUT} s")
        time.sleep(0.5)
    return time.monotonic() - started


def _loaded(url: str) -> bool:
    data = _graphql(url, WORKSPACE)
    entries = (data or {}).get("workspaceOrError", {}).get("locationEntries") or []
    return bool(entries) and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"


def _runs(url: str) -> list[dict]:
    data = _graphql(url, RUNS)
    return (data or {}).get("runsOrError", {}).get("results") or []


def one_start(root: Path, ports: Ports, log: Path, users: int, days: int) -> dict[str, float]:
    args = [f"--{name.replace('_', '-')}-port={port}" for name, port in vars(ports).items()]
    url = f"http://127.0.0.1:{ports.ui}"
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen([str(Path(sys.executable).parent / "churn-platform"), "stack", "--root", str(root),
                                 "--users", str(users), "--days", str(days), *args],
                                cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    figures = {"ui_ready_s": _wait("the UI", lambda: _loaded(url), proc, started)}
    known = {run["runId"] for run in _runs(url) if run["status"] in ("SUCCESS", "FAILURE")}
    if not known:
        figures["first_sensor_run_done_s"] = _wait(
            "the first sensor run", lambda: any(r["status"] in ("SUCCESS", "FAILURE") for r in _runs(url)),
            proc, started)
        figures["first_run_status"] = _runs(url)[-1]["status"]
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    figures["stop_s"] = time.monotonic() - stopping
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stack_startup", description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=150)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="churn-bench-stack-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as `postgres` and must reach its cluster
    ports = Ports(**{name: _free_port() for name in vars(Ports())})
    log = root / "stack.log"
    print(f"make stack, {args.users} users x {args.days} days, in {root} (log: {log})")
    print("first start (new cluster, seed):", one_start(root / "stack", ports, log, args.users, args.days))
    print("restart (existing state):      ", one_start(root / "stack", ports, log, args.users, args.days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
