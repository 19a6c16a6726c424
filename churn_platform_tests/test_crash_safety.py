"""Crash safety: `kill -9` of the run worker mid-write leaves every partition whole.

Each test runs the real definitions in a child process on a persistent instance, waits for
a precise moment (a log line, a file lock, a dbt statement, an MLflow version), SIGKILLs the
child's whole process group, checks that each partition is either as before or fully
written, then re-runs the same partition and compares its rows with a clean run.
"""

import datetime as dt
import shutil

import dagster as dg
import duckdb
import pytest

from churn_platform.constants import (
    CHAMPION_ALIAS,
    CHURN_MODEL,
    CHURN_SCORES,
    MLFLOW_EXPERIMENT,
    PROMOTION_DECISION,
    RAW_EVENTS,
    REGISTERED_MODEL_NAME,
    USER_DAILY_ACTIVITY,
    USER_FEATURES,
    WAREHOUSE_POOL,
)
from churn_platform.events import landing_key
from churn_platform_tests.helpers import (
    DEMO_END,
    K,
    K_MINUS_4,
    RunWorker,
    event_table,
    execute_assets,
    holds_write_lock,
    install_project_instance_config,
    instance_at,
    migrate_mlflow_store,
    partition_fingerprints,
    put_table,
    query,
    recover_killed_run,
    worker_env,
)

INGEST_DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(5)]
ROWS_PER_DAY = 20_000  # a day's load takes long enough that the kill lands inside the range


def _ledger(settings) -> dict:
    return {day: (files, rows) for day, files, rows in query(settings, "SELECT event_date, files, rows FROM ingested_days")}


def test_killed_multi_day_ingest_leaves_each_day_whole_and_a_rerun_loads_the_same_rows(settings, s3):
    for i, day in enumerate(INGEST_DAYS):
        table = event_table(day, ROWS_PER_DAY, start_id=i * ROWS_PER_DAY)
        put_table(s3, settings.landing_bucket, landing_key(day, "part-000.parquet"), table)
    days = (INGEST_DAYS[0].isoformat(), INGEST_DAYS[-1].isoformat())
    # The instance `make dev` installs: one slot in the `warehouse` pool. (Waits shortened.)
    project = install_project_instance_config(settings.dagster_home, free_slots_after_run_end_seconds=1)
    assert project["run_monitoring"]["free_slots_after_run_end_seconds"] > 0

    # A transaction per day (a batch holds CHURN_INGEST_BATCH_ROWS landed rows), so the kill
    # can land between the commits of one run.
    env = worker_env(settings, CHURN_INGEST_BATCH_ROWS=str(ROWS_PER_DAY))
    worker = RunWorker(env, [RAW_EVENTS], partition_range=days)
    worker.wait_for_line(rf"{INGEST_DAYS[0]}: {ROWS_PER_DAY} rows")  # the first day committed
    worker.kill()

    counts = dict(query(settings, "SELECT event_date, count(*) FROM raw_events GROUP BY ALL"))
    ledger = _ledger(settings)
    assert INGEST_DAYS[0] in counts and len(counts) < len(INGEST_DAYS), (
        f"the kill should land inside the range, after the first day: loaded {sorted(counts)}"
    )
    for day in INGEST_DAYS:  # each day is all or nothing, and the ledger says which
        assert counts.get(day, 0) in (0, ROWS_PER_DAY), f"{day} is half loaded: {counts.get(day)} rows"
        assert ledger.get(day) == ((1, ROWS_PER_DAY) if day in counts else None), day
    assert query(settings, "SELECT count(*) FROM raw_events_rejected")[0][0] == 0

    with instance_at(settings.dagster_home) as instance:
        # The killed run still holds the pool's only slot: a rerun would wait for it forever
        # unless the instance frees the slots of a run that ended.
        (killed,) = instance.get_runs()
        slots = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots
        assert [slot.run_id for slot in slots] == [killed.run_id]
        recover_killed_run(instance, killed.run_id)
        assert execute_assets(settings, [RAW_EVENTS], instance, partition_range=days).success
    clean = settings.with_overrides(data_dir=settings.data_dir.parent / "clean")
    with instance_at(settings.dagster_home.parent / "clean_home") as instance:
        assert execute_assets(clean, [RAW_EVENTS], instance, partition_range=days).success
    rerun_rows = partition_fingerprints(settings, "raw_events", "event_date")
    assert rerun_rows == partition_fingerprints(clean, "raw_events", "event_date")
    assert sorted(rerun_rows) == INGEST_DAYS and {n for n, _ in rerun_rows.values()} == {ROWS_PER_DAY}
    assert _ledger(settings) == _ledger(clean) == {day: (1, ROWS_PER_DAY) for day in INGEST_DAYS}


ACTIVITY_WINDOW_DAYS = 120  # one transaction a day: the kill lands between the first commit and the last


def test_killed_daily_activity_leaves_each_day_whole_and_a_rerun_rebuilds_it(demo_settings, ingested_demo, tmp_path):
    settings = demo_settings.with_overrides(dagster_home=tmp_path / "dagster_home")
    days = [DEMO_END - dt.timedelta(days=n) for n in reversed(range(ACTIVITY_WINDOW_DAYS))]
    window = (days[0].isoformat(), days[-1].isoformat())
    in_window = ("activity_date >= ?", [days[0]])
    clean = partition_fingerprints(ingested_demo, USER_DAILY_ACTIVITY, "activity_date", *in_window)
    # Every day of the window differs from its rebuild, so each day shows which one it holds.
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("UPDATE user_daily_activity SET logins = logins + 1 WHERE activity_date >= ?", [days[0]])
    before = partition_fingerprints(settings, USER_DAILY_ACTIVITY, "activity_date", *in_window)
    assert sorted(before) == sorted(clean) == days and all(before[d] != clean[d] for d in days)

    worker = RunWorker(worker_env(settings, CHURN_INGEST_BATCH_ROWS="1"), [USER_DAILY_ACTIVITY],
                       partition_range=window)
    worker.wait_for_line(rf"{USER_DAILY_ACTIVITY}: {days[0]}\.\.{days[0]} .* committed")
    worker.kill()

    after = partition_fingerprints(settings, USER_DAILY_ACTIVITY, "activity_date", *in_window)
    assert sorted(after) == days, "a day lost its rows"
    for day in days:
        assert after[day] in (before[day], clean[day]), f"{day} is half rebuilt"
    rebuilt = [day for day in days if after[day] == clean[day]]
    assert rebuilt == days[:len(rebuilt)] and 1 <= len(rebuilt) < len(days), (
        f"the kill should land inside the window, after its first day: rebuilt {len(rebuilt)} of {len(days)}"
    )

    with instance_at(settings.dagster_home) as instance:
        assert execute_assets(settings, [USER_DAILY_ACTIVITY], instance, partition_range=window).success
    assert partition_fingerprints(settings, USER_DAILY_ACTIVITY, "activity_date", *in_window) == clean


def _dbt_log(target_root) -> str:
    return "".join(path.read_text() for path in target_root.glob("*/dbt.log"))


def test_killed_dbt_build_leaves_the_window_as_before_and_a_rerun_rebuilds_it(demo_settings, ingested_demo, tmp_path):
    settings = demo_settings.with_overrides(dagster_home=tmp_path / "dagster_home")
    window = (K_MINUS_4, K)
    with instance_at(tmp_path / "clean_home") as instance:
        assert execute_assets(settings, [USER_FEATURES], instance, partition_range=window, checks=False).success
    clean = partition_fingerprints(settings, USER_FEATURES, "as_of_date")
    assert len(clean) == 5
    # Make the current window differ from a rebuild: one as-of date missing, one altered.
    missing, altered = sorted(clean)[1], sorted(clean)[3]
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("DELETE FROM user_features WHERE as_of_date = ?", [missing])
        con.execute("UPDATE user_features SET support_tickets_90d = support_tickets_90d + 1 WHERE as_of_date = ?",
                    [altered])
    before = partition_fingerprints(settings, USER_FEATURES, "as_of_date")
    assert before != clean

    target_root = tmp_path / "dbt_target"  # dagster-dbt puts each invocation's target and dbt.log here
    worker = RunWorker(worker_env(settings, DBT_TARGET_PATH=str(target_root)), [USER_FEATURES],
                       partition_range=window, checks=False)
    # dbt logs each statement before it runs: the window's delete has run (inside the model's
    # transaction) and the window's new rows are being computed into a temporary table.
    worker.wait_until(lambda: "__dbt_tmp" in _dbt_log(target_root), "the window being rebuilt by dbt")
    worker.kill()

    log = _dbt_log(target_root)
    assert "delete from" in log and "user_features: COMMIT" not in log, "the kill should land mid-transaction"
    assert partition_fingerprints(settings, USER_FEATURES, "as_of_date") == before

    with instance_at(settings.dagster_home) as instance:
        assert execute_assets(settings, [USER_FEATURES], instance, partition_range=window, checks=False).success
    assert partition_fingerprints(settings, USER_FEATURES, "as_of_date") == clean


# Training, promotion and scores on a copy of the training inputs, with a fresh MLflow store.
TRAINING = [CHURN_MODEL, PROMOTION_DECISION]
SCORES_AS_OF = DEMO_END  # the as-of date of partition K


@pytest.fixture(scope="module")
def migrated_mlflow_store(tmp_path_factory):
    return migrate_mlflow_store(tmp_path_factory.mktemp("crash-mlflow") / "mlflow.db")


@pytest.fixture
def trained(demo_settings, training_inputs, migrated_mlflow_store, tmp_path):
    """A champion trained on partition K (v1), its scores, and the instance that recorded them."""
    shutil.copy(training_inputs, demo_settings.warehouse_path)
    shutil.copy(migrated_mlflow_store, demo_settings.data_dir / "mlflow.db")
    settings = demo_settings.with_overrides(dagster_home=tmp_path / "dagster_home")
    with instance_at(settings.dagster_home) as instance:
        assert execute_assets(settings, [*TRAINING, CHURN_SCORES], instance, partition=K).success
    return settings


def _client(settings):
    from churn_platform.ml.mlflow_io import connect

    return connect(settings.mlflow_tracking_uri)


def _champion(client) -> str | None:
    aliases = client.get_registered_model(REGISTERED_MODEL_NAME).aliases
    return str(aliases[CHAMPION_ALIAS]) if CHAMPION_ALIAS in aliases else None


def _versions(client) -> dict[str, object]:
    return {str(v.version): v for v in client.search_model_versions(f"name = '{REGISTERED_MODEL_NAME}'")}


def _latest_model_metadata(instance) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(CHURN_MODEL), asset_partitions=[K]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_killed_training_leaves_no_promotable_version_and_a_rerun_registers_a_fresh_one(trained):
    settings = trained
    client = _client(settings)
    experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT).experiment_id
    champion = _champion(client)
    with instance_at(settings.dagster_home) as instance:
        trained_model = _latest_model_metadata(instance)
    assert champion == trained_model["model_version"]

    # 1. Killed from outside once the training's MLflow run exists (logging the model).
    worker = RunWorker(worker_env(settings), TRAINING, partition=K)
    worker.wait_until(
        lambda: client.search_runs([experiment], "attributes.status = 'RUNNING'"),
        "a RUNNING MLflow run", interval=0.02,
    )
    worker.kill()
    assert _champion(client) == champion
    versions_before = set(_versions(client))
    # 2. Killed between registering the version and finishing the run: the worst moment, as
    # no cleanup runs and a registered version is left whose run never finished.
    worker = RunWorker(worker_env(settings), TRAINING, partition=K, sigkill_before_mlflow_run_finishes=True)
    assert worker.wait() == -9, worker.output[-3000:]

    unfinished = {r.info.run_id for r in client.search_runs([experiment], "attributes.status = 'RUNNING'")}
    assert len(unfinished) == 2, "each killed training leaves its MLflow run unfinished"
    orphans = [v for number, v in _versions(client).items() if number not in versions_before]
    assert len(orphans) == 1 and orphans[0].run_id in unfinished, "a registered version of an unfinished run"
    orphan = str(orphans[0].version)
    assert _champion(client) == champion and not orphans[0].aliases
    with instance_at(settings.dagster_home) as instance:
        # promotion_decision reads the challenger from churn_model's materialization, which a
        # killed run never writes: it still names the version trained before the kills.
        assert _latest_model_metadata(instance)["model_version"] == trained_model["model_version"]
        assert execute_assets(settings, [PROMOTION_DECISION], instance, partition=K).success
        assert _champion(client) == champion

        rerun = execute_assets(settings, TRAINING, instance, partition=K)
        assert rerun.success
        retrained = _latest_model_metadata(instance)
    assert int(retrained["model_version"]) > int(orphan)
    assert client.get_run(retrained["mlflow_run_id"]).info.status == "FINISHED"
    assert retrained["roc_auc"] == trained_model["roc_auc"]  # same rows, same model
    assert _champion(client) == champion  # an equal challenger does not replace the champion
    assert orphan in _versions(client) and not _versions(client)[orphan].aliases


def test_killed_scores_leave_the_partition_old_or_new_and_a_rerun_writes_the_same_rows(trained):
    settings = trained
    clean = partition_fingerprints(settings, CHURN_SCORES, "as_of_date")
    assert list(clean) == [SCORES_AS_OF]
    # Earlier scores of the partition that differ from a rerun's, and a neighbour partition.
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("DELETE FROM churn_scores WHERE user_id % 10 = 0")
        con.execute("UPDATE churn_scores SET churn_probability = 0.5, model_version = 'earlier'")
        con.execute("INSERT INTO churn_scores SELECT as_of_date - 7 AS as_of_date, * EXCLUDE (as_of_date) "
                    "FROM churn_scores")
    before = partition_fingerprints(settings, CHURN_SCORES, "as_of_date")
    neighbour = SCORES_AS_OF - dt.timedelta(days=7)
    assert before[SCORES_AS_OF] != clean[SCORES_AS_OF]

    worker = RunWorker(worker_env(settings), [CHURN_SCORES], partition=K)
    worker.wait_until(lambda: holds_write_lock(worker.proc.pid, settings.warehouse_path),
                      "the scores writer holding the warehouse")
    worker.kill()

    after = partition_fingerprints(settings, CHURN_SCORES, "as_of_date")
    assert after in (before, {**before, **clean}), "the partition must be the earlier rows or the new rows"

    with instance_at(settings.dagster_home) as instance:
        assert execute_assets(settings, [CHURN_SCORES], instance, partition=K).success
    assert partition_fingerprints(settings, CHURN_SCORES, "as_of_date") == {neighbour: before[neighbour], **clean}
