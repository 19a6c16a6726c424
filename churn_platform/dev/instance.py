"""The local Dagster instance and process environment shared by `make dev`, the demo and tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from churn_platform.constants import PROMOTION_POOL, TRAINING_POOL
from churn_platform.settings import PROJECT_ROOT, Settings
from churn_platform.telemetry import OFFLINE_ENV

INSTANCE_CONFIG = PROJECT_ROOT / "dagster.yaml"
TRAINING_POOL_LIMIT = 4  # the origin lesson ran at most 4 trainings at once
PROMOTION_POOL_LIMIT = 1  # decisions compare against the current champion: one at a time


def install_instance_config(settings: Settings) -> None:
    """Copy the project's dagster.yaml into DAGSTER_HOME (telemetry off, pools, run monitoring)."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCE_CONFIG, settings.dagster_home / "dagster.yaml")


def configure_pools(settings: Settings) -> None:
    """Per-pool limits live in the instance's storage (dagster.yaml sets only the default): set them there.

    The promotion limit equals the default, but is set explicitly so it survives a default change.
    """
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    with DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(TRAINING_POOL, TRAINING_POOL_LIMIT)
        instance.event_log_storage.set_concurrency_slots(PROMOTION_POOL, PROMOTION_POOL_LIMIT)


def stack_env(settings: Settings, endpoint: str, base: dict[str, str] | None = None,
              queue_url: str | None = None) -> dict[str, str]:
    """Environment for every process of the local stack: the same names as production."""
    env = dict(os.environ if base is None else base)
    if queue_url:
        env["CHURN_LANDING_QUEUE_URL"] = queue_url
    env.update(OFFLINE_ENV)
    env.update(
        DAGSTER_HOME=str(settings.dagster_home),
        CHURN_DATA_DIR=str(settings.data_dir),
        CHURN_LANDING_BUCKET=settings.landing_bucket,
        AWS_ENDPOINT_URL_S3=endpoint,
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri,
        # MLflow's own loaders unpickle what an artifact names; ours (ml/artifacts.py) never need them.
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def stop_process_group(proc: subprocess.Popen, grace_seconds: float = 30) -> None:
    """SIGINT the whole group (dagster's graceful stop), SIGKILL what is left after the grace."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
