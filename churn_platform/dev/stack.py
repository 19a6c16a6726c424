"""`make dev`: the local S3 (restored from disk, seeded if empty) and `dagster dev`; Ctrl-C stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from churn_platform.dev.instance import configure_pools, install_instance_config, stack_env, stop_process_group
from churn_platform.dev.landing import DEMO_USERS, land_demo_events
from churn_platform.dev.local_s3 import PeriodicSync, S3Mirror, local_s3_server
from churn_platform.dev.s3 import bucket_is_empty, ensure_bucket, ensure_landing_queue, s3_client
from churn_platform.settings import DEFAULT_DEMO_DAYS, PROJECT_ROOT, Settings, default_demo_end_date

CODE_LOCATION_MODULE = "churn_platform.definitions"


def _report(mirror: S3Mirror) -> None:
    for key, why in sorted(mirror.failures.items()):
        print(f"local S3 mirror: {key!r} {why}", file=sys.stderr)


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def run_dev(settings: Settings, host: str, port: int, s3_port: int) -> int:
    """Run until Ctrl-C or SIGTERM; returns dagster dev's exit code (0 when stopped by us)."""
    install_instance_config(settings)
    with local_s3_server(port=s3_port) as endpoint:
        settings = settings.with_overrides(s3_endpoint_url=endpoint, local_s3_credentials=True)
        client = s3_client(endpoint)
        ensure_bucket(client, settings.landing_bucket)
        mirror = S3Mirror(client, settings.landing_bucket, settings.data_dir / "s3")
        restored = mirror.restore()
        print(f"local S3 at {endpoint}: restored {restored} object(s) into s3://{settings.landing_bucket}")
        _report(mirror)
        queue_url = ensure_landing_queue(endpoint, settings.landing_bucket)
        print(f"S3 notifications of events/raw/ go to {queue_url} (the landing sensor's event mode)")
        if bucket_is_empty(client, settings.landing_bucket):
            end = default_demo_end_date()
            print(f"landing demo data: {DEMO_USERS} users, {DEFAULT_DEMO_DAYS} days ending {end} ...")
            files, events = land_demo_events(settings, DEMO_USERS, DEFAULT_DEMO_DAYS, end, 42)
            print(f"landed {events} events in {files} files")
            mirror.sync()
        env = stack_env(settings, endpoint, queue_url=queue_url)
        settings = Settings.from_env(env)  # the start date from the demo data
        configure_pools(settings)
        syncer = PeriodicSync(mirror, on_error=lambda msg: print(msg, file=sys.stderr))
        syncer.start()
        command = [
            str(Path(sys.executable).parent / "dagster"), "dev", "-m", CODE_LOCATION_MODULE,
            "-h", host, "-p", str(port),
        ]
        proc = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT,
                                start_new_session=True)
        print(f"Dagster UI: http://{host}:{port}  (Ctrl-C stops everything)")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            print("stopping dagster dev ...")
            return 0
        finally:
            stop_process_group(proc)
            syncer.stop()
            mirror.sync()
            _report(mirror)
