"""End to end through a real `dagster dev`: what an operator does in the UI, and the S3 sensor."""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager
from urllib.parse import quote_plus

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn_platform.constants import CHURN_MODEL, CHURN_SCORES, RAW_EVENTS
from churn_platform.events import day_prefix, landing_key
from churn_platform.jobs import INGEST_JOB
from churn_platform.resources.warehouse import DuckDBWarehouse
from churn_platform.sensors.freshness_alert import FRESHNESS_SENSOR
from churn_platform_tests.dagster_ui import LAUNCH_BACKFILL, LAUNCH_RUN, SENSOR_QUERY, run_tags, wait_for
from churn_platform_tests.helpers import event_table, instance_at, put_table, report_materialization_at

pytestmark = pytest.mark.e2e

LANDING_SENSOR = "s3_landing_sensor"
RAW_EVENTS_KEY = {"path": [RAW_EVENTS]}
RUN_TIMEOUT = 120
BACKFILL_TIMEOUT = 150
SENSOR_RUN_TIMEOUT = 90
DAY = 86400


MATERIALIZATIONS_QUERY = """
query($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(partitions: [$partition]) { runId partition } }
  }
}
"""



def _logs(dagster_dev, runs: list[dict]) -> str:
    return "\n".join(dagster_dev.run_logs(run["runId"]) for run in runs)


def _landed_rows(dagster_dev, day: dt.date) -> int:
    """Rows in the parquet files landed for `day` (the generator lands only valid, unique rows)."""
    s3 = dagster_dev.s3
    bucket = dagster_dev.settings.landing_bucket
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=day_prefix(day))
    bodies = (s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
              for obj in listing["Contents"])
    return sum(pq.read_metadata(pa.BufferReader(body)).num_rows for body in bodies)


def test_backfill_of_a_date_range_is_one_run_and_lands_in_the_warehouse(dagster_dev):
    days = dagster_dev.seeded_days
    launched = dagster_dev.graphql(LAUNCH_BACKFILL, params={
        "assetSelection": [RAW_EVENTS_KEY],
        "partitionNames": [day.isoformat() for day in days],
    })["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    backfill = dagster_dev.wait_for_backfill(launched["backfillId"], BACKFILL_TIMEOUT)
    runs = backfill["runs"]
    assert backfill["status"] == "COMPLETED_SUCCESS", f"{backfill}\n{_logs(dagster_dev, runs)}"
    assert len(runs) == 1, f"raw_events has a single-run backfill policy: {runs}"
    run = runs[0]
    assert run["status"] == "SUCCESS", _logs(dagster_dev, runs)
    assert run_tags(run)["dagster/asset_partition_range_start"] == days[0].isoformat()
    assert run_tags(run)["dagster/asset_partition_range_end"] == days[-1].isoformat()

    # Other runs (the sensor's) may still hold the warehouse's writer lock.
    dagster_dev.wait_until_idle(RUN_TIMEOUT)
    warehouse = DuckDBWarehouse(path=str(dagster_dev.settings.warehouse_path))
    with warehouse.connect(read_only=True) as con:
        loaded = dict(con.execute(
            "SELECT event_date, count(*) FROM raw_events "
            "WHERE event_date BETWEEN ? AND ? GROUP BY event_date",
            [days[0], days[-1]],
        ).fetchall())
    assert loaded == {day: _landed_rows(dagster_dev, day) for day in days}


def test_materialize_one_partition_like_the_ui(dagster_dev):
    day = dagster_dev.seeded_days[-1].isoformat()
    launched = dagster_dev.graphql(LAUNCH_RUN, params={
        "selector": {
            **dagster_dev.repository_selector(),
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [RAW_EVENTS_KEY],
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
        "mode": "default",
    })["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    dagster_dev.assert_run_succeeded(run_id, RUN_TIMEOUT)
    asset = dagster_dev.graphql(
        MATERIALIZATIONS_QUERY, key=RAW_EVENTS_KEY, partition=day)["assetOrError"]
    assert {"runId": run_id, "partition": day} in asset["assetMaterializations"]


def test_landing_sensor_ingests_a_newly_landed_day(dagster_dev):
    selector = {**dagster_dev.repository_selector(), "sensorName": LANDING_SENSOR}
    sensor = dagster_dev.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]
    assert sensor["__typename"] == "Sensor", (
        f"{LANDING_SENSOR} is not in the code location: {sensor}")
    assert sensor["targets"] == [{"pipelineName": INGEST_JOB}]
    assert sensor["sensorState"]["status"] == "RUNNING", "the landing sensor must run by default"

    day = (dagster_dev.seeded_days[-1] + dt.timedelta(days=1)).isoformat()  # nothing landed yet
    put_table(dagster_dev.s3, dagster_dev.settings.landing_bucket,
              landing_key(day, "part-000.parquet"), event_table(dt.date.fromisoformat(day), 30))

    wanted = {"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": day}
    deadline = time.monotonic() + SENSOR_RUN_TIMEOUT
    while not (runs := dagster_dev.runs(tags=wanted)):
        if time.monotonic() > deadline:
            ticks = dagster_dev.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]
            pytest.fail(f"no sensor run for {day} after {SENSOR_RUN_TIMEOUT} s; sensor: {ticks}")
        time.sleep(2)
    assert len(runs) == 1, runs
    run = dagster_dev.assert_run_succeeded(runs[0]["runId"], RUN_TIMEOUT)
    assert run["jobName"] == INGEST_JOB


SENSOR_ID_QUERY = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id sensorState { status } } }
}
"""
STOP_SENSOR = "mutation($id: String!) { stopSensor(id: $id) { __typename } }"
START_SENSOR = "mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) { __typename } }"


@contextmanager
def _sensor_paused(dagster_dev, selector):
    """The landing sensor stopped for the body (no tick in flight), then started and ticking again.

    Dagster re-reads a sensor's state when a tick ends and writes it back with the tick's cursor:
    a tick ending while we stop and start can write the stop back over the start. So the start
    is sent again while the sensor shows stopped, until a tick after it is recorded."""
    sensor_id = dagster_dev.graphql(SENSOR_ID_QUERY, selector=selector)["sensorOrError"]["id"]
    assert dagster_dev.graphql(STOP_SENSOR, id=sensor_id)["stopSensor"]["__typename"] == "StopSensorMutationResult"

    def state():
        return dagster_dev.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]

    wait_for("the sensor's last tick to end", lambda: all(t["status"] != "STARTED" for t in state()["ticks"]),
             SENSOR_RUN_TIMEOUT, 0.5)
    try:
        yield
    finally:
        resumed = time.time()

        def ticking() -> bool:
            current = state()
            if current["status"] != "RUNNING":
                assert dagster_dev.graphql(START_SENSOR, selector=selector)["startSensor"]["__typename"] == "Sensor"
                return False
            return any(t["timestamp"] > resumed and t["status"] != "STARTED" for t in current["ticks"])

        wait_for("the sensor ticking again", ticking, SENSOR_RUN_TIMEOUT, 0.5)


TICK_LOGS_QUERY = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 30) { runIds skipReason logEvents { events { message } } } } }
  }
}
"""


def _tick_texts(dagster_dev, selector) -> list[tuple[list[str], str]]:
    """Each recent tick's run ids and what it said (its skip reason or its log), newest first."""
    ticks = dagster_dev.graphql(TICK_LOGS_QUERY, selector=selector)["sensorOrError"]["sensorState"]["ticks"]
    return [(t["runIds"], " ".join([t["skipReason"] or ""] + [e["message"] for e in t["logEvents"]["events"]]))
            for t in ticks]


def _new_runs(dagster_dev, day: str, before: set[str]) -> list[dict]:
    runs = dagster_dev.runs(tags={"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": day})
    return [r for r in runs if r["runId"] not in before]


def test_the_queue_brings_a_file_once_and_the_sweep_finds_one_whose_notice_was_lost(dagster_dev):
    selector = {**dagster_dev.repository_selector(), "sensorName": LANDING_SENSOR}
    wait_for("the sensor's first runs", lambda: dagster_dev.runs(tags={"dagster/sensor_name": LANDING_SENSOR}),
             SENSOR_RUN_TIMEOUT)
    dagster_dev.wait_until_idle(RUN_TIMEOUT)
    before = {r["runId"] for r in dagster_dev.runs()}
    bucket = dagster_dev.settings.landing_bucket
    lost, queued = (day.isoformat() for day in dagster_dev.seeded_days[:2])  # `lost` is older than the hot scan

    # A notice: the run comes from the tick that read it.
    key = landing_key(queued, "queued file.parquet")
    put_table(dagster_dev.s3, bucket, key, event_table(dt.date.fromisoformat(queued), 12, start_id=50_000))
    [run] = wait_for("the run of the notified file", lambda: _new_runs(dagster_dev, queued, before),
                     SENSOR_RUN_TIMEOUT)
    dagster_dev.assert_run_succeeded(run["runId"], RUN_TIMEOUT)
    [said] = [text for run_ids, text in _tick_texts(dagster_dev, selector) if run["runId"] in run_ids]
    assert "queue: 1 message(s) naming 1 key(s)" in said, said

    # The same notice again, then a whole sweep: neither runs the file a second time.
    notice = {"Records": [{"eventName": "ObjectCreated:Put",
                           "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}}}]}
    dagster_dev.sqs.send_message(QueueUrl=dagster_dev.queue_url, MessageBody=json.dumps(notice))
    wait_for("a tick that read the duplicate notice", lambda: any(
        "queue: 1 message(s) naming 1 key(s)" in text and not run_ids
        for run_ids, text in _tick_texts(dagster_dev, selector)), SENSOR_RUN_TIMEOUT)

    # A file whose notice is deleted before the sensor reads it: found by the sweep.
    with _sensor_paused(dagster_dev, selector):
        put_table(dagster_dev.s3, bucket, landing_key(lost, "lost.parquet"),
                  event_table(dt.date.fromisoformat(lost), 12, start_id=60_000))
        dagster_dev.sqs.purge_queue(QueueUrl=dagster_dev.queue_url)
    [swept] = wait_for("the sweep's run of the file", lambda: _new_runs(dagster_dev, lost, before),
                       SENSOR_RUN_TIMEOUT)
    dagster_dev.assert_run_succeeded(swept["runId"], RUN_TIMEOUT)
    [said] = [text for run_ids, text in _tick_texts(dagster_dev, selector) if swept["runId"] in run_ids]
    assert "(sweep)" in said and "queue: 0 message(s)" in said, said
    assert len(_new_runs(dagster_dev, queued, before)) == 1  # the sweeps since did not repeat it
    for day, extra in ((queued, 12), (lost, 12)):
        assert dagster_dev.partition_status(RAW_EVENTS, day) == "MATERIALIZED"
        with DuckDBWarehouse(path=str(dagster_dev.settings.warehouse_path)).connect(read_only=True) as con:
            rows = con.execute("SELECT count(*) FROM raw_events WHERE event_date = ?", [day]).fetchone()[0]
        assert rows == _landed_rows(dagster_dev, dt.date.fromisoformat(day)) and rows > extra


def test_a_bad_day_never_hides_its_good_neighbour(dagster_dev):
    """Land a corrupt file for D-1 and a good one for D in the same tick: one range run fails,
    but D shows as materialized, its daily aggregate gets built, and D-1 waits for new files."""
    selector = {**dagster_dev.repository_selector(), "sensorName": LANDING_SENSOR}
    bad, good = (day.isoformat() for day in dagster_dev.seeded_days[:2])
    bucket = dagster_dev.settings.landing_bucket
    # The sensor's first ingest of the seeded days must be behind us, or it would take these files.
    wait_for("the sensor's first runs", lambda: dagster_dev.runs(tags={"dagster/sensor_name": LANDING_SENSOR}),
              SENSOR_RUN_TIMEOUT)
    dagster_dev.wait_until_idle(RUN_TIMEOUT)
    before = {r["runId"] for r in dagster_dev.runs()}  # earlier tests ran these days too
    with _sensor_paused(dagster_dev, selector):  # both files in one tick: one range run
        dagster_dev.s3.put_object(Bucket=bucket, Key=landing_key(bad, "late.parquet"), Body=b"not parquet")
        put_table(dagster_dev.s3, bucket, landing_key(good, "late.parquet"),
                  event_table(dt.date.fromisoformat(good), 25, start_id=10_000))

    range_tags = {"dagster/sensor_name": LANDING_SENSOR, "dagster/asset_partition_range_start": bad,
                  "dagster/asset_partition_range_end": good}
    [ranged] = wait_for("the range run", lambda: dagster_dev.runs(tags=range_tags), SENSOR_RUN_TIMEOUT)
    assert dagster_dev.wait_for_run(ranged["runId"], RUN_TIMEOUT)["status"] == "FAILURE"
    assert dagster_dev.partition_status(RAW_EVENTS, good) == "MATERIALIZED"
    assert dagster_dev.partition_status(RAW_EVENTS, bad) == "FAILED"
    assert f"date={bad}/late.parquet: unreadable parquet" in dagster_dev.run_logs(ranged["runId"])

    followup_tags = {"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": good}
    aggregate = wait_for(
        "the aggregate run of the good day",
        lambda: [r for r in dagster_dev.runs(tags=followup_tags) if r["runId"] not in before | {ranged["runId"]}],
        SENSOR_RUN_TIMEOUT + RUN_TIMEOUT,
    )[0]
    dagster_dev.assert_run_succeeded(aggregate["runId"], RUN_TIMEOUT)
    assert dagster_dev.partition_status("user_daily_activity", good) == "MATERIALIZED"

    def ticks_naming_the_bad_day():
        state = dagster_dev.graphql(SENSOR_QUERY, selector=selector)["sensorOrError"]["sensorState"]
        return [t for t in state["ticks"] if f"{bad}: waiting for new or changed files" in (t["skipReason"] or "")]

    wait_for("a sensor tick naming the day that waits for new files", ticks_naming_the_bad_day, SENSOR_RUN_TIMEOUT)



FRESHNESS_QUERY = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      freshnessStatusInfo { freshnessStatus freshnessStatusMetadata { lastMaterializedTimestamp } }
      internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } }
    }
  }
}
"""
FRESHNESS_TIMEOUT = 60


def _freshness(dagster_dev, asset: str) -> dict:
    return dagster_dev.graphql(FRESHNESS_QUERY, key={"path": [asset]})["assetNodeOrError"]


def test_old_scores_and_model_show_as_stale_alert_and_recover(dagster_dev):
    """Scores last written 9 days ago and a model 16 days ago, as the event log holds them after
    missed Mondays: the freshness daemon marks them WARN and FAIL in the UI, the freshness alert
    sends one notice each, and a new scores partition turns the asset fresh again with a notice."""
    selector = {**dagster_dev.repository_selector(), "sensorName": FRESHNESS_SENSOR}
    policy = _freshness(dagster_dev, CHURN_SCORES)["internalFreshnessPolicy"]
    assert (policy["warnWindowSeconds"], policy["failWindowSeconds"]) == (8 * DAY, 15 * DAY)
    now = time.time()
    with instance_at(dagster_dev.settings.dagster_home) as instance:
        report_materialization_at(instance, CHURN_SCORES, "2026-11-16", now - 9 * DAY)
        report_materialization_at(instance, CHURN_MODEL, "2026-11-09", now - 16 * DAY)

    def statuses():
        return {a: (_freshness(dagster_dev, a)["freshnessStatusInfo"] or {}).get("freshnessStatus")
                for a in (CHURN_SCORES, CHURN_MODEL)}

    wait_for("scores WARNING and the model DEGRADED in the UI",
             lambda: statuses() == {CHURN_SCORES: "WARNING", CHURN_MODEL: "DEGRADED"}, FRESHNESS_TIMEOUT)
    age = _freshness(dagster_dev, CHURN_SCORES)["freshnessStatusInfo"]["freshnessStatusMetadata"]
    assert abs(age["lastMaterializedTimestamp"] - (now - 9 * DAY)) < 1

    def notices(*needles):
        texts = " ".join(text for _, text in _tick_texts(dagster_dev, selector))
        return all(needle in texts for needle in needles) and texts

    texts = wait_for("the stale notices", lambda: notices(
        ":hourglass: churn_scores is stale (WARN", "9.0 days ago (partition 2026-11-16)",
        ":red_circle: churn_model failed its freshness policy (FAIL", "16.0 days ago (partition 2026-11-09)"),
        FRESHNESS_TIMEOUT)
    assert texts.count(":hourglass: churn_scores is stale") == 1  # once, not every tick

    with instance_at(dagster_dev.settings.dagster_home) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(CHURN_SCORES, partition="2026-11-23"))
    wait_for("scores HEALTHY again", lambda: statuses()[CHURN_SCORES] == "HEALTHY", FRESHNESS_TIMEOUT)
    wait_for("the recovery notice", lambda: notices(
        ":white_check_mark: churn_scores is fresh again (was WARN)", "(partition 2026-11-23)"), FRESHNESS_TIMEOUT)
