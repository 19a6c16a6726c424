"""`make stack`: the production topology on loopback, each part its own server process.

PostgreSQL (Dagster's instance storage, MLflow's backend store), the MLflow tracking server
(artifacts proxied into S3), Dagster's code server, webserver and daemon, the loopback S3
server. The Dagster processes run with CHURN_ENV=prod, the instance file `deploy/dagster.yaml`
and the commands of `topology.py`: the same as a deployment. Everything lives under
`.data/stack/`, apart from `make dev`'s `.data/` and `.dagster_home/`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from churn_platform.constants import DEFAULT_SCORES_PREFIX
from churn_platform.dev import topology
from churn_platform.dev.instance import stop_process_group
from churn_platform.dev.postgres import PostgresCluster
from churn_platform.dev.s3 import ensure_bucket, ensure_landing_queue, s3_client
from churn_platform.settings import LOCAL_S3_CREDENTIAL, START_DATE_FILE
from churn_platform.telemetry import OFFLINE_ENV

LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 40
POOL_LIMITS = {"training": 4, "promotion": 1}  # see dev/instance.py: the seed's limits
# Variables of the caller's shell that would change what a service does: never inherited...
_OWNED_PREFIXES = ("CHURN_", "DAGSTER_", "MLFLOW_", "AWS_", "PG")
# ...except the operator's own knobs, which `make stack` hands to the Dagster services.
_OPERATOR_PREFIXES = ("CHURN_GATE_", "CHURN_SPARK_", "CHURN_EMR_")
_OPERATOR_VARS = ("CHURN_LANDING_SENSOR_INTERVAL_SECONDS", "CHURN_LANDING_SWEEP_INTERVAL_SECONDS", "SLACK_BOT_TOKEN", "CHURN_SLACK_CHANNEL",
                  "CHURN_ENGINE", "CHURN_DBT_TARGET", "CHURN_PIPES_BUCKET",
                  "CHURN_CONTACT_COST", "CHURN_SAVED_CUSTOMER_VALUE", "CHURN_SAVE_RATE")


class StackError(RuntimeError):
    """A part of the stack did not start; the message names it and ends with its log."""


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    """One server process in its own process group, its output in `log_path`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=topology.DEPLOY_DIR, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> float:
        """Seconds until `ready()`; raises StackError (with the log) if it exits or times out."""
        started = time.monotonic()
        while not self.ready():
            if not self.alive():
                raise StackError(f"{self.name} exited with {self.proc.returncode if self.proc else None}:\n"
                                 f"{log_tail(self.log_path)}")
            if time.monotonic() - started > timeout:
                raise StackError(f"{self.name} not ready after {timeout:.0f} s:\n{log_tail(self.log_path)}")
            time.sleep(0.25)
        return time.monotonic() - started

    def stop(self) -> None:
        """SIGINT to the group (each server's graceful stop), SIGKILL after the grace."""
        if self.proc is not None:
            stop_process_group(self.proc)

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash would."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _code_server_serving(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        from dagster._grpc.client import DagsterGrpcClient

        try:
            return DagsterGrpcClient(port=port, host=host).health_check_query() == "SERVING"
        except Exception:  # noqa: BLE001 — any failure means "not serving yet"; wait_ready times out
            return False

    return check


def _base_env() -> dict[str, str]:
    """The caller's environment minus anything that configures a service: those we set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWNED_PREFIXES)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class ProductionStack:
    """The five services of `topology.SERVICES`, wired to an S3 endpoint that the caller runs."""

    layout: topology.Layout
    s3_endpoint: str
    ports: topology.Ports = topology.Ports()
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. gate thresholds in tests
    landing_bucket: str = "churn-landing"
    say: Callable[[str], None] = print
    services: dict[str, Service] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    queue_url: str = ""  # event mode's SQS queue, created with the buckets

    def __post_init__(self) -> None:
        self.postgres = PostgresCluster(self.layout.postgres, self.ports.postgres, LOOPBACK)

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.ui}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.mlflow}"

    # -- environments -------------------------------------------------------------------------

    def _aws_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": LOCAL_S3_CREDENTIAL, "AWS_SECRET_ACCESS_KEY": LOCAL_S3_CREDENTIAL,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def mlflow_env(self) -> dict[str, str]:
        return {
            **_base_env(), **OFFLINE_ENV, **self._aws_env(),
            "MLFLOW_BACKEND_STORE_URI": self.postgres.url(topology.MLFLOW_DB),
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{topology.MLFLOW_ARTIFACT_BUCKET}",
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "MLFLOW_SERVER_ALLOWED_HOSTS": f"{LOOPBACK}:{self.ports.mlflow},localhost:{self.ports.mlflow}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    def dagster_env(self) -> dict[str, str]:
        """What the code server, webserver and daemon (and so every run worker) see."""
        start_date = (self.layout.data_dir / START_DATE_FILE).read_text().strip()
        return {
            **_base_env(), **OFFLINE_ENV, **self._aws_env(),
            "DAGSTER_HOME": str(self.layout.dagster_home),
            "DAGSTER_POSTGRES_HOST": LOOPBACK,
            "DAGSTER_POSTGRES_PORT": str(self.ports.postgres),
            "DAGSTER_POSTGRES_USER": topology.POSTGRES_USER,
            "DAGSTER_POSTGRES_PASSWORD": self.postgres.password,
            "DAGSTER_POSTGRES_DB": topology.DAGSTER_DB,
            "DAGSTER_CODE_SERVER_HOST": LOOPBACK,
            "DAGSTER_CODE_SERVER_PORT": str(self.ports.code_server),
            "DAGSTER_COMPUTE_LOG_BUCKET": topology.COMPUTE_LOG_BUCKET,
            "CHURN_ENV": "prod",
            "CHURN_DATA_DIR": str(self.layout.data_dir),
            "CHURN_LANDING_BUCKET": self.landing_bucket,
            "CHURN_START_DATE": start_date,
            "CHURN_DAGSTER_UI_URL": self.ui_url,
            "CHURN_MLFLOW_UI_URL": self.mlflow_url,
            "CHURN_LANDING_SENSOR_INTERVAL_SECONDS": "30",
            "CHURN_LANDING_QUEUE_URL": self.queue_url,
            "CHURN_LANDING_SWEEP_INTERVAL_SECONDS": "600",
            "CHURN_SCORES_BUCKET": self.landing_bucket,  # the default, and a bucket the stack creates
            "CHURN_SCORES_PREFIX": DEFAULT_SCORES_PREFIX,
            # Empty: contact_economics.py's placeholders, unless the operator's shell sets them (extra_env).
            "CHURN_CONTACT_COST": "",
            "CHURN_SAVED_CUSTOMER_VALUE": "",
            "CHURN_SAVE_RATE": "",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            # One retry policy: ours (backoff with jitter around every MLflow call), not MLflow's too.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            "AWS_ENDPOINT_URL_SQS": self.s3_endpoint,  # the loopback server serves SQS too
            **self.extra_env,
        }

    # -- services -----------------------------------------------------------------------------

    def _build_services(self) -> None:
        logs = self.layout.logs
        dagster_env = self.dagster_env()
        ports = self.ports
        self.services = {
            "postgres": Service("postgres", self.postgres.server_command(), _base_env(),
                                self.postgres.accepts_connections, logs / "postgres.log"),
            "mlflow": Service("mlflow", topology.mlflow_command(LOOPBACK, ports.mlflow), self.mlflow_env(),
                              lambda: _http_ok(f"{self.mlflow_url}/health"), logs / "mlflow.log"),
            "code_server": Service(
                "code_server", topology.dagster_command("code_server", LOOPBACK, ports.code_server), dagster_env,
                _code_server_serving(LOOPBACK, ports.code_server), logs / "code_server.log"),
            "webserver": Service("webserver", topology.dagster_command("webserver", LOOPBACK, ports.ui),
                                 dagster_env, lambda: _http_ok(f"{self.ui_url}/server_info"),
                                 logs / "webserver.log"),
            "daemon": Service("daemon", topology.dagster_command("daemon", LOOPBACK), dagster_env,
                              lambda: True, logs / "daemon.log"),
        }

    def check_ports_free(self) -> None:
        ports = self.ports
        taken = {name: port for name, port in
                 (("UI", ports.ui), ("MLflow", ports.mlflow), ("PostgreSQL", ports.postgres),
                  ("code server", ports.code_server)) if port_in_use(port)}
        if taken:
            raise StackError(
                f"port(s) in use: {', '.join(f'{n} {p}' for n, p in taken.items())}. Is `make dev` or "
                "another `make stack` running? Stop it first: the two never share a port or a folder.")

    def start(self, timeout: float = 180) -> None:
        """Start every service in dependency order; raises StackError naming the part that failed."""
        begun = time.monotonic()
        self.check_ports_free()
        self._prepare_storage()
        self._build_services()
        postgres = self.services["postgres"]
        postgres.start()
        self.timings["postgres"] = postgres.wait_ready(timeout)
        self.postgres.create_databases()
        self.services["mlflow"].start()  # boots (and migrates its store) while we set the pools
        self._set_pool_limits()
        self.services["code_server"].start()
        self.timings["mlflow"] = self.services["mlflow"].wait_ready(timeout) + self.timings["postgres"]
        self.timings["code_server"] = self.services["code_server"].wait_ready(timeout)
        self.services["webserver"].start()
        self.services["daemon"].start()
        self.services["webserver"].wait_ready(timeout)
        self.timings["ui_ready"] = time.monotonic() - begun
        self.say(f"stack up in {self.timings['ui_ready']:.1f} s: "
                 + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings.items()
                             if name != "ui_ready"))

    def _prepare_storage(self) -> None:
        for folder in (self.layout.data_dir, self.layout.dagster_home, self.layout.logs):
            folder.mkdir(parents=True, exist_ok=True)
        (self.layout.dagster_home / "dagster.yaml").write_bytes(topology.INSTANCE_CONFIG.read_bytes())
        client = s3_client(self.s3_endpoint)
        for bucket in (self.landing_bucket, topology.MLFLOW_ARTIFACT_BUCKET, topology.COMPUTE_LOG_BUCKET):
            ensure_bucket(client, bucket)
        self.queue_url = ensure_landing_queue(self.s3_endpoint, self.landing_bucket)
        if self.postgres.initialize():
            self.say(f"created the PostgreSQL cluster in {self.postgres.data_dir}")

    def _set_pool_limits(self) -> None:
        """Per-pool limits live in the instance storage: set with Dagster's own CLI, as in production."""
        for pool, limit in POOL_LIMITS.items():
            done = subprocess.run(["dagster", "instance", "concurrency", "set", pool, str(limit)],
                                  env=self.dagster_env(), cwd=topology.DEPLOY_DIR, capture_output=True, text=True)
            if done.returncode:
                raise StackError(f"setting the {pool} pool's limit failed:\n{done.stderr[-3000:]}")

    def stop(self) -> None:
        """Dependents first, each tier at once: Dagster's three processes, then MLflow, then
        PostgreSQL (last, so the others can still write their final state)."""
        for tier in (("daemon", "webserver", "code_server"), ("mlflow",), ("postgres",)):
            stopping = [threading.Thread(target=self.services[name].stop) for name in tier if name in self.services]
            for thread in stopping:
                thread.start()
            for thread in stopping:
                thread.join()

    def restart(self, name: str, timeout: float = 120) -> float:
        """Start a service that was stopped or killed; seconds until it is ready again."""
        service = self.services[name]
        if service.alive():
            service.stop()
        service.start()
        return service.wait_ready(timeout)

    def __enter__(self) -> ProductionStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def run_stack(root: Path, ports: topology.Ports, seed_users: int, seed_days: int) -> int:
    """`make stack`: the loopback S3 (restored from disk, seeded if empty) and the five services."""
    from churn_platform.dev.landing import land_demo_events
    from churn_platform.dev.local_s3 import PeriodicSync, S3Mirror, local_s3_server
    from churn_platform.dev.s3 import bucket_is_empty
    from churn_platform.settings import Settings, default_demo_end_date

    layout = topology.Layout(root)
    knobs = {k: v for k, v in os.environ.items() if k.startswith(_OPERATOR_PREFIXES) or k in _OPERATOR_VARS}
    stack = ProductionStack(layout, s3_endpoint="", ports=ports, extra_env=knobs)
    stack.check_ports_free()
    if port_in_use(ports.s3):
        raise StackError(f"port {ports.s3} (S3) is in use: is `make dev` running? Stop it first.")
    signal.signal(signal.SIGTERM, _interrupt)
    with local_s3_server(port=ports.s3) as endpoint:
        stack.s3_endpoint = endpoint
        client = s3_client(endpoint)
        mirrors = []
        for bucket in (stack.landing_bucket, topology.MLFLOW_ARTIFACT_BUCKET, topology.COMPUTE_LOG_BUCKET):
            ensure_bucket(client, bucket)
            mirror = S3Mirror(client, bucket, layout.s3_mirror)
            restored = mirror.restore()
            if restored:
                print(f"restored {restored} object(s) into s3://{bucket}")
            mirrors.append(mirror)
        if bucket_is_empty(client, stack.landing_bucket):
            seed_settings = Settings.from_env({"CHURN_DATA_DIR": str(layout.data_dir),
                                               "CHURN_LANDING_BUCKET": stack.landing_bucket,
                                               "AWS_ENDPOINT_URL_S3": endpoint})
            end = default_demo_end_date()
            print(f"landing demo data: {seed_users} users, {seed_days} days ending {end} ...")
            files, events = land_demo_events(seed_settings, seed_users, seed_days, end, 42)
            print(f"landed {events} events in {files} files")
        syncers = [PeriodicSync(m, on_error=lambda msg: print(msg, file=sys.stderr)) for m in mirrors]
        for syncer in syncers:
            syncer.start()
        try:
            stack.start()
            print(f"Dagster UI: {stack.ui_url}   MLflow: {stack.mlflow_url}   logs: {layout.logs}   "
                  "(Ctrl-C stops everything)")
            while all(service.alive() for service in stack.services.values()):
                time.sleep(1)
            dead = [name for name, service in stack.services.items() if not service.alive()]
            print(f"stopping: {', '.join(dead)} exited (see {layout.logs})", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping the stack ...")
            return 0
        except StackError as err:
            print(f"make stack failed: {err}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
            for syncer in syncers:
                syncer.stop()
            for mirror in mirrors:
                mirror.sync()
