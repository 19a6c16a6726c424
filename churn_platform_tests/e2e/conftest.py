"""A real `dagster dev` (webserver + daemon) over a loopback S3 server, started once per module.

The stack gets its own DAGSTER_HOME, CHURN_DATA_DIR and moto server, and a few seeded days
that end two days ago, so yesterday is a partition with nothing landed yet.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from churn_platform.dev.instance import install_instance_config, stack_env, stop_process_group
from churn_platform.dev.landing import land_demo_events
from churn_platform.dev.local_s3 import local_s3_server
from churn_platform.dev.s3 import s3_client
from churn_platform.settings import PROJECT_ROOT, Settings

CODE_LOCATION_MODULE = "churn_platform.definitions"
# Every seeded date in range is a run for the landing sensor's first tick: keep them few.
SEEDED_DAYS = 3
SEEDED_USERS = 300
STARTUP_TIMEOUT = 120
GROUP_EXIT_TIMEOUT = 15
LOG_TAIL_LINES = 60

ACTIVE_RUN_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
FINISHED_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUN_FIELDS = "runId status jobName tags { key value }"

RUN_QUERY = f"""
query($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {RUN_FIELDS} }}
    ... on Error {{ message }}
  }}
}}
"""

RUNS_QUERY = f"""
query($filter: RunsFilter) {{
  runsOrError(filter: $filter) {{
    __typename
    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
    ... on Error {{ message }}
  }}
}}
"""

RUN_LOGS_QUERY = """
query($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message stack } }
      }
    }
    ... on Error { message }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class DagsterDev:
    """A running `dagster dev`: its GraphQL API, its settings and the data seeded for it."""

    url: str
    settings: Settings
    log_path: Path
    location: str = ""
    repository: str = ""
    seeded_days: tuple[dt.date, ...] = ()

    @property
    def s3(self):
        """A boto3 client for the stack's S3 server."""
        return s3_client(self.settings.s3_endpoint_url)

    def graphql(self, query: str, **variables) -> dict:
        """POST a query; raise on transport or GraphQL errors, return `data`."""
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def repository_selector(self) -> dict:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def run(self, run_id: str) -> dict:
        result = self.graphql(RUN_QUERY, runId=run_id)["runOrError"]
        assert result["__typename"] == "Run", result
        return result

    def runs(self, tags: dict[str, str] | None = None,
             statuses: list[str] | None = None) -> list[dict]:
        """Runs matching all `tags` (and one of `statuses`), newest first."""
        run_filter: dict = {}
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if statuses:
            run_filter["statuses"] = statuses
        result = self.graphql(RUNS_QUERY, filter=run_filter)["runsOrError"]
        assert result["__typename"] == "Runs", result
        return result["results"]

    def wait_for_run(self, run_id: str, timeout: float) -> dict:
        """Poll until the run finishes; fail with its logs if it does not in time."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in FINISHED_RUN_STATUSES:
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} still {run['status']} after {timeout:.0f} s\n"
                            f"{self.run_logs(run_id)}")
            time.sleep(1)

    def assert_run_succeeded(self, run_id: str, timeout: float) -> dict:
        run = self.wait_for_run(run_id, timeout)
        assert run["status"] == "SUCCESS", (
            f"run {run_id} ended {run['status']}\n{self.run_logs(run_id)}")
        return run

    def wait_until_idle(self, timeout: float) -> None:
        """Wait until no run is queued or running (e.g. before opening the warehouse)."""
        deadline = time.monotonic() + timeout
        while active := self.runs(statuses=ACTIVE_RUN_STATUSES):
            if time.monotonic() > deadline:
                pytest.fail(f"runs still active after {timeout:.0f} s: "
                            f"{[(r['runId'], r['jobName'], r['status']) for r in active]}")
            time.sleep(1)

    def run_logs(self, run_id: str) -> str:
        """The run's warnings and errors (with stacks), for assertion messages."""
        lines = [f"--- warnings and errors of run {run_id} ---"]
        cursor = None
        while True:
            result = self.graphql(RUN_LOGS_QUERY, runId=run_id, cursor=cursor)["logsForRun"]
            if result["__typename"] != "EventConnection":
                return f"{lines[0]}\n{result}"
            for event in result["events"]:
                if event.get("level") in ("WARNING", "ERROR", "CRITICAL") or event.get("error"):
                    lines.append(f"[{event.get('level')}] {event.get('stepKey') or ''} "
                                 f"{event.get('message', '')}")
                    if event.get("error"):
                        lines.append(event["error"]["message"] + "".join(event["error"]["stack"]))
            if not result["hasMore"]:
                return "\n".join(lines)
            cursor = result["cursor"]

    def wait_until_loaded(self, proc: subprocess.Popen, timeout: float) -> None:
        """Wait for /server_info and a loaded code location with one repository."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n"
                            f"{_log_tail(self.log_path)}")
            entry = self._location_entry()
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                if loaded["__typename"] != "RepositoryLocation":
                    pytest.fail(f"code location {entry['name']} failed to load: "
                                f"{loaded.get('message')}\n{''.join(loaded.get('stack', []))}")
                self.location = entry["name"]
                self.repository = loaded["repositories"][0]["name"]
                return
            time.sleep(1)
        pytest.fail(f"code location not loaded after {timeout} s:\n{_log_tail(self.log_path)}")

    def _location_entry(self) -> dict | None:
        try:
            requests.get(f"{self.url}/server_info", timeout=5).raise_for_status()
            workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        except requests.RequestException:
            return None  # the webserver is not up yet
        entries = workspace.get("locationEntries") or []
        return entries[0] if entries else None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """Stop dagster dev's whole process group; fail if any process of it outlives the grace."""
    stop_process_group(proc)
    deadline = time.monotonic() + GROUP_EXIT_TIMEOUT
    while _group_alive(proc.pid):
        if time.monotonic() > deadline:
            leftover = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(proc.pid)],
                                      capture_output=True, text=True).stdout
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"processes of dagster dev left after stop (now killed):\n{leftover}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    """`dagster dev -m churn_platform.definitions` on a free loopback port, with seeded landing data."""
    tmp = tmp_path_factory.mktemp("dagster_dev")
    last_day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
    first_day = last_day - dt.timedelta(days=SEEDED_DAYS - 1)
    with local_s3_server(port=0) as endpoint:
        env = {
            "CHURN_ENV": "local",
            "CHURN_DATA_DIR": str(tmp / "data"),
            "DAGSTER_HOME": str(tmp / "dagster_home"),
            "AWS_ENDPOINT_URL_S3": endpoint,
            "CHURN_START_DATE": first_day.isoformat(),
        }
        settings = Settings.from_env(env)
        install_instance_config(settings)
        land_demo_events(settings, users=SEEDED_USERS, days=SEEDED_DAYS, end_date=last_day, random_seed=7)

        port = _free_port()
        stack = DagsterDev(
            url=f"http://127.0.0.1:{port}",
            settings=settings,
            log_path=tmp / "dagster_dev.log",
            seeded_days=tuple(first_day + dt.timedelta(days=i) for i in range(SEEDED_DAYS)),
        )
        command = [str(Path(sys.executable).parent / "dagster"), "dev", "-m", CODE_LOCATION_MODULE,
                   "-h", "127.0.0.1", "-p", str(port)]
        with stack.log_path.open("wb") as log:
            proc = subprocess.Popen(command, env={**stack_env(settings, endpoint), **env},
                                    cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            started = time.monotonic()
            stack.wait_until_loaded(proc, STARTUP_TIMEOUT)
            print(f"dagster dev ready in {time.monotonic() - started:.1f} s at {stack.url}")
            yield stack
        finally:
            _stop(proc)
