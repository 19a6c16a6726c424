"""A real `dagster dev` (webserver + daemon) over a loopback S3 server, started once per package.

The stack gets its own DAGSTER_HOME, CHURN_DATA_DIR and moto server, and a few seeded days
that end two days ago, so yesterday is a partition with nothing landed yet. As in `make dev`,
the bucket's notifications go to an SQS queue: the landing sensor runs in event mode, with a
sweep every SWEEP_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from churn_platform.dev.instance import install_instance_config, stack_env, stop_process_group
from churn_platform.dev.landing import land_demo_events
from churn_platform.dev.local_s3 import local_s3_server
from churn_platform.dev.s3 import ensure_landing_queue, s3_client, sqs_client
from churn_platform.events import day_prefix
from churn_platform.settings import PROJECT_ROOT, Settings
from churn_platform_tests.dagster_ui import DagsterUI
from churn_platform_tests.e2e.browser import DevTools, chromium_page
from churn_platform_tests.helpers import free_port

CODE_LOCATION_MODULE = "churn_platform.definitions"
# Every seeded date in range is a run for the landing sensor's first tick: keep them few.
SEEDED_DAYS = 3
SEEDED_USERS = 300
SWEEP_SECONDS = 15
STARTUP_TIMEOUT = 120
GROUP_EXIT_TIMEOUT = 15
LOG_TAIL_LINES = 60

def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class DagsterDev(DagsterUI):
    """A running `dagster dev`: its GraphQL API, its settings and the data seeded for it."""

    settings: Settings | None = None
    log_path: Path | None = None
    seeded_days: tuple[dt.date, ...] = ()
    queue_url: str = ""
    withheld: dict[str, bytes] = field(default_factory=dict)  # landing key: body, not landed yet

    @property
    def s3(self):
        """A boto3 client for the stack's S3 server."""
        return s3_client(self.settings.s3_endpoint_url)

    @property
    def sqs(self):
        return sqs_client(self.settings.s3_endpoint_url)


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


@contextmanager
def running_dagster_dev(tmp: Path, users: int, days: int, last_day: dt.date, withhold: dt.date | None = None,
                        **extra_env: str) -> Iterator[DagsterDev]:
    """`dagster dev -m churn_platform.definitions` on a free loopback port, over `days` of
    generated events ending `last_day`, landed before it starts; the files of `withhold` are
    kept back (in `withheld`) for the test to land late."""
    first_day = last_day - dt.timedelta(days=days - 1)
    with local_s3_server(port=0) as endpoint:
        env = {
            "CHURN_ENV": "local",
            "CHURN_DATA_DIR": str(tmp / "data"),
            "DAGSTER_HOME": str(tmp / "dagster_home"),
            "AWS_ENDPOINT_URL_S3": endpoint,
            "CHURN_START_DATE": first_day.isoformat(),
            "CHURN_LANDING_SENSOR_INTERVAL_SECONDS": "5",  # tests wait on ticks: keep them short
            "CHURN_LANDING_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "2",  # Dagster's freshness daemon (default 30)
            "CHURN_FRESHNESS_ALERT_INTERVAL_SECONDS": "5",
            # moto keeps one state per process: a worker's earlier stacks must not share a bucket or queue.
            "CHURN_LANDING_BUCKET": f"e2e-{uuid.uuid4().hex[:12]}",
            **extra_env,
        }
        bucket = env["CHURN_LANDING_BUCKET"]
        env["CHURN_LANDING_QUEUE_URL"] = ensure_landing_queue(endpoint, bucket, name=bucket)
        settings = Settings.from_env(env)
        install_instance_config(settings)
        land_demo_events(settings, users=users, days=days, end_date=last_day, random_seed=7)
        withheld = {}
        if withhold is not None:
            s3 = s3_client(endpoint)
            for obj in s3.list_objects_v2(Bucket=settings.landing_bucket, Prefix=day_prefix(withhold))["Contents"]:
                withheld[obj["Key"]] = s3.get_object(Bucket=settings.landing_bucket, Key=obj["Key"])["Body"].read()
                s3.delete_object(Bucket=settings.landing_bucket, Key=obj["Key"])
            sqs_client(endpoint).purge_queue(QueueUrl=env["CHURN_LANDING_QUEUE_URL"])  # the sweep finds the rest

        port = free_port()
        stack = DagsterDev(
            url=f"http://127.0.0.1:{port}",
            settings=settings,
            log_path=tmp / "dagster_dev.log",
            seeded_days=tuple(first_day + dt.timedelta(days=i) for i in range(days)),
            queue_url=env["CHURN_LANDING_QUEUE_URL"],
            withheld=withheld,
        )
        command = [str(Path(sys.executable).parent / "dagster"), "dev", "-m", CODE_LOCATION_MODULE,
                   "-h", "127.0.0.1", "-p", str(port)]
        with stack.log_path.open("wb") as log:
            proc = subprocess.Popen(command, env={**stack_env(settings, endpoint), **env},
                                    cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            started = time.monotonic()
            stack.wait_until_loaded(lambda: proc.poll() is None, lambda: _log_tail(stack.log_path),
                                   STARTUP_TIMEOUT)
            print(f"dagster dev ready in {time.monotonic() - started:.1f} s at {stack.url}")
            yield stack
        finally:
            _stop(proc)


@pytest.fixture(scope="package")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    """A few seeded days that end two days ago, so yesterday is a partition with nothing landed yet.
    One for the package (the UI test renders the same instance the others drive)."""
    last_day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
    with running_dagster_dev(tmp_path_factory.mktemp("dagster_dev"), SEEDED_USERS, SEEDED_DAYS, last_day) as stack:
        yield stack


@pytest.fixture
def page(tmp_path) -> Iterator[DevTools]:
    """A blank page in a fresh headless Chromium (browser.py)."""
    with chromium_page(tmp_path) as opened:
        yield opened
