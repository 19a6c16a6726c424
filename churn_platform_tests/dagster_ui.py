"""A test client for Dagster's GraphQL API: what the UI asks, for `dagster dev` and `make stack` alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

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

RUN_FIELDS = "runId status jobName startTime endTime assetSelection { path } tags { key value }"

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
        ... on ErrorEvent { error { message stack cause { message } } }
      }
    }
    ... on Error { message }
  }
}
"""

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

LAUNCH_REEXECUTION = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

FINISHED_BACKFILL_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL_QUERY = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      error { message stack }
      runs { runId status tags { key value } }
    }
    ... on Error { message }
  }
}
"""

SENSOR_QUERY = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      targets { pipelineName }
      sensorState {
        status
        ticks(limit: 5) { status timestamp runIds skipReason error { message } }
      }
    }
    ... on Error { message }
  }
}
"""

PARTITION_STATUS_QUERY = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } }
    }
  }
}
"""


def wait_for(what: str, probe: Callable, timeout: float, interval: float = 2,
             explain: Callable[[], str] | None = None):
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`,
    with what `explain` says about the state (for example the runs so far)."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s" + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)
    return found


def describe_runs(runs: list[dict]) -> str:
    """One line per run, oldest first: status, seconds, partition (or range) and assets."""
    lines = []
    for run in reversed(runs):
        tags = run_tags(run)
        partition = tags.get("dagster/partition") or "..".join(
            filter(None, (tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end"))))
        assets = ",".join(key["path"][-1] for key in run.get("assetSelection") or [])
        seconds = (run["endTime"] or time.time()) - run["startTime"] if run.get("startTime") else None
        took = f"{seconds:.0f} s" if seconds is not None else "not started"
        lines.append(f"{run['status']:<10} {took:>11}  {partition or '-':<23} {assets or run['jobName']}")
    return "\n".join(lines)


def run_tags(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


@dataclass
class DagsterUI:
    """A Dagster webserver's GraphQL API at `url`, with the code location it serves."""

    url: str
    location: str = ""
    repository: str = ""

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

    def launch_run(self, job: str, tags: dict[str, str] | None = None,
                   asset_selection: list[dict] | None = None) -> str:
        """Launch `job` as the UI's Materialize button does; returns the run id."""
        selector = {**self.repository_selector(), "pipelineName": job}
        if asset_selection is not None:
            selector["assetSelection"] = asset_selection
        launched = self.graphql(LAUNCH_RUN, params={
            "selector": selector,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
            "mode": "default",
        })["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def reexecute(self, run_id: str, strategy: str = "FROM_FAILURE") -> str:
        """The UI's Re-execute button (`FROM_FAILURE` or `ALL_STEPS`); returns the new run id."""
        launched = self.graphql(LAUNCH_REEXECUTION, params={
            "parentRunId": run_id, "strategy": strategy})["launchRunReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

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

    def run_events(self, run_id: str) -> list[dict]:
        """Every event of the run, in order."""
        events, cursor = [], None
        while True:
            result = self.graphql(RUN_LOGS_QUERY, runId=run_id, cursor=cursor)["logsForRun"]
            assert result["__typename"] == "EventConnection", result
            events.extend(result["events"])
            if not result["hasMore"]:
                return events
            cursor = result["cursor"]

    def run_logs(self, run_id: str) -> str:
        """The run's warnings and errors (with stacks), for assertion messages."""
        lines = [f"--- warnings and errors of run {run_id} ---"]
        try:
            events = self.run_events(run_id)
        except AssertionError as err:
            return f"{lines[0]}\n{err}"
        for event in events:
            if event.get("level") in ("WARNING", "ERROR", "CRITICAL") or event.get("error"):
                lines.append(f"[{event.get('level')}] {event.get('stepKey') or ''} "
                             f"{event.get('message', '')}")
                if event.get("error"):
                    lines.append(event["error"]["message"] + "".join(event["error"]["stack"]))
        return "\n".join(lines)

    def wait_for_backfill(self, backfill_id: str, timeout: float) -> dict:
        """Poll until the backfill finishes; fail with its runs' logs if it does not in time."""
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.graphql(BACKFILL_QUERY, id=backfill_id)["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] in FINISHED_BACKFILL_STATUSES:
                return backfill
            if time.monotonic() > deadline:
                logs = "\n".join(self.run_logs(run["runId"]) for run in backfill["runs"])
                pytest.fail(f"backfill {backfill_id} still {backfill['status']} after {timeout:.0f} s\n{logs}")
            time.sleep(1)

    def partition_status(self, asset: str, partition: str) -> str | None:
        """MATERIALIZED, FAILED or MATERIALIZING, as the asset's partition bar shows `partition`."""
        node = self.graphql(PARTITION_STATUS_QUERY, key={"path": [asset]})["assetNodeOrError"]
        for part in node["assetPartitionStatuses"]["ranges"]:
            if part["startKey"] <= partition <= part["endKey"]:
                return part["status"]
        return None

    def location_entry(self) -> dict | None:
        """The workspace's one code location entry, or None while the webserver is not up."""
        try:
            requests.get(f"{self.url}/server_info", timeout=5).raise_for_status()
            workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        except requests.RequestException:
            return None
        entries = workspace.get("locationEntries") or []
        return entries[0] if entries else None

    def wait_until_loaded(self, alive: Callable[[], bool], log_tail: Callable[[], str], timeout: float) -> None:
        """Wait for a loaded code location with one repository; fail with the log if the server dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                pytest.fail(f"the webserver exited:\n{log_tail()}")
            entry = self.location_entry()
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                if loaded["__typename"] != "RepositoryLocation":
                    pytest.fail(f"code location {entry['name']} failed to load: "
                                f"{loaded.get('message')}\n{''.join(loaded.get('stack', []))}")
                self.location = entry["name"]
                self.repository = loaded["repositories"][0]["name"]
                return
            time.sleep(1)
        pytest.fail(f"code location not loaded after {timeout} s:\n{log_tail()}")
