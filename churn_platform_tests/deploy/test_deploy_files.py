"""deploy/ against churn_platform/dev/topology.py: what `make stack` runs is what a deployment runs.

Files only: nothing here builds an image, starts a container or renders a chart.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from churn_platform.dev import topology
from churn_platform.settings import PROJECT_ROOT
from churn_platform.telemetry import OFFLINE_ENV

DEPLOY = topology.DEPLOY_DIR
HOST = "0.0.0.0"
PORTS = topology.Ports()
DAGSTER_SERVICES = ("code_server", "webserver", "daemon")
ALL_NAMES = {name for service in topology.SERVICES for name in topology.service_variables(service)}
# compose and Helm target AWS S3 itself, where these stay unset: an empty MLFLOW_S3_ENDPOINT_URL
# breaks MLflow, and the DockerRunLauncher refuses to forward a name that is not set.
OMITTED = set(topology.ENDPOINT_VARS)
POSTGRES_IMAGE_VARS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}  # the postgres image's own
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY_ID")
REQUIRED_INTERPOLATION = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}")  # ${VAR:?message}: no default
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
NAME_MENTION = re.compile(r"\b(?:CHURN|DAGSTER|MLFLOW)_[A-Z0-9_]+\b")
# In Helm the chart renders the instance and the workspace: these become chart values.
HELM_CHART_OWNED = {"DAGSTER_HOME", "DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PORT", "DAGSTER_POSTGRES_USER",
                    "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_DB", "DAGSTER_CODE_SERVER_HOST",
                    "DAGSTER_CODE_SERVER_PORT"}
HELM_AWS_SECRET = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # Secret `churn-platform-aws`
# Optional settings: compose and Helm leave them empty, which the code reads as its default.
DEFAULTED_BY_CODE = {"CHURN_SCORES_BUCKET", "CHURN_SCORES_PREFIX", "CHURN_CONTACT_COST",
                     "CHURN_SAVED_CUSTOMER_VALUE", "CHURN_SAVE_RATE"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(DEPLOY / "compose.yaml")


@pytest.fixture(scope="module")
def instance() -> dict:
    return load_yaml(topology.INSTANCE_CONFIG)


@pytest.fixture(scope="module")
def compose_instance() -> dict:
    return load_yaml(DEPLOY / "compose" / "dagster.yaml")


@pytest.fixture(scope="module")
def helm() -> dict:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


def expected_command(service: str) -> list[str]:
    if service == "mlflow":
        return topology.mlflow_command(HOST, PORTS.mlflow)
    port = {"code_server": PORTS.code_server, "webserver": PORTS.ui, "daemon": None}[service]
    return topology.dagster_command(service, HOST, port)


def default_of(value: str) -> str:
    """The default of a `${VAR:-default}` interpolation."""
    match = re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", value)
    assert match, f"{value!r} is not ${{VAR:-default}}"
    return match.group(1)


# -- compose: the five services, their commands and variable names ---------------------------------


def test_compose_runs_topologys_services(compose):
    assert tuple(compose["services"]) == topology.SERVICES


@pytest.mark.parametrize("service", [s for s in topology.SERVICES if s != "postgres"])
def test_compose_command_is_topologys_argv(compose, service):
    assert compose["services"][service]["command"] == expected_command(service)


@pytest.mark.parametrize("service", [s for s in topology.SERVICES if s != "postgres"])
def test_compose_environment_is_topologys_names(compose, service):
    environment = compose["services"][service]["environment"]
    assert isinstance(environment, dict)
    assert set(environment) == set(topology.service_variables(service)) - OMITTED
    # Quoted: YAML would read true/false/60 as other types, and compose rejects or rewrites them.
    assert all(isinstance(value, str) for value in environment.values())


def test_topology_carries_scores_and_campaign_settings():
    for service in DAGSTER_SERVICES:
        assert DEFAULTED_BY_CODE <= set(topology.service_variables(service))
    assert not DEFAULTED_BY_CODE & set(topology.service_variables("mlflow"))


def test_compose_and_helm_leave_optional_settings_to_the_codes_defaults(compose, helm):
    from churn_platform.settings import Settings

    environment = compose["services"]["code_server"]["environment"]
    compose_values = {name: default_of(environment[name]) for name in DEFAULTED_BY_CODE}
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    helm_values = {name: deployment["env"][name] for name in DEFAULTED_BY_CODE}
    assert compose_values == helm_values == dict.fromkeys(DEFAULTED_BY_CODE, "")
    base = {"CHURN_ENV": "prod", "CHURN_LANDING_BUCKET": "landing", "CHURN_START_DATE": "2026-01-01"}
    assert Settings.from_env({**base, **compose_values}) == Settings.from_env(base)


def test_compose_postgres_gets_only_its_images_variables(compose):
    environment = compose["services"]["postgres"]["environment"]
    assert set(environment) == POSTGRES_IMAGE_VARS
    assert not POSTGRES_IMAGE_VARS & ALL_NAMES
    assert topology.service_variables("postgres") == ()


def test_compose_dagster_services_share_one_environment(compose):
    environments = [compose["services"][service]["environment"] for service in DAGSTER_SERVICES]
    assert environments[0] == environments[1] == environments[2]


@pytest.mark.parametrize("service", topology.SERVICES)
def test_compose_has_no_literal_secret(compose, service):
    for name, value in compose["services"][service].get("environment", {}).items():
        if SECRET_NAME.search(name):
            assert REQUIRED_INTERPOLATION.fullmatch(value), f"{service}: {name} must be ${{VAR:?message}}"
        for password in URL_PASSWORD.findall(value):
            assert REQUIRED_INTERPOLATION.fullmatch(password), f"{service}: {name} holds a literal password"


def test_compose_databases_are_topologys(compose):
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    dagster = services["code_server"]["environment"]
    assert postgres["POSTGRES_USER"] == dagster["DAGSTER_POSTGRES_USER"] == topology.POSTGRES_USER
    assert postgres["POSTGRES_DB"] == dagster["DAGSTER_POSTGRES_DB"] == topology.DAGSTER_DB
    assert dagster["DAGSTER_POSTGRES_HOST"] == "postgres"
    # `?` in `${VAR:?message}` would start a query string: parse with the interpolation replaced.
    backend = urlsplit(re.sub(r"\$\{[^}]*\}", "INTERPOLATED",
                              services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]))
    assert backend.scheme == "postgresql+psycopg2"  # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
    assert (backend.username, backend.hostname, backend.path) == (topology.POSTGRES_USER, "postgres",
                                                                  f"/{topology.MLFLOW_DB}")
    init_mounts = [v.split(":")[0] for v in services["postgres"]["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert len(init_mounts) == 1
    init_sql = (DEPLOY / init_mounts[0]).read_text()
    assert re.search(rf"^CREATE DATABASE {topology.MLFLOW_DB};$", init_sql, re.MULTILINE)


def test_compose_dagster_services_reach_code_server_and_mlflow(compose):
    services = compose["services"]
    environment = services["code_server"]["environment"]
    assert environment["DAGSTER_CODE_SERVER_PORT"] == str(PORTS.code_server)
    assert environment["DAGSTER_CODE_SERVER_HOST"] in services["code_server"]["networks"]["default"]["aliases"]
    tracking = urlsplit(environment["MLFLOW_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", PORTS.mlflow)
    # MLflow answers 403 to a Host header it does not list (only /health is exempt).
    allowed = default_of(services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"]).split(",")
    assert tracking.netloc in allowed
    assert f"localhost:{PORTS.mlflow}" in allowed  # the published port, from the host's browser


def test_compose_healthchecks_and_start_order(compose):
    services = compose["services"]

    def probe(service: str) -> str:
        return " ".join(services[service]["healthcheck"]["test"])

    assert "pg_isready" in probe("postgres")
    assert f"127.0.0.1:{PORTS.mlflow}/health" in probe("mlflow")
    assert f"grpc-health-check -p {PORTS.code_server}" in probe("code_server")
    assert f"127.0.0.1:{PORTS.ui}/server_info" in probe("webserver")
    waits = {service: {dependency: condition["condition"]
                       for dependency, condition in services[service].get("depends_on", {}).items()}
             for service in topology.SERVICES}
    assert waits == {
        "postgres": {},
        "mlflow": {"postgres": "service_healthy"},
        "code_server": {"postgres": "service_healthy", "mlflow": "service_healthy"},
        "webserver": {"code_server": "service_healthy"},
        "daemon": {"code_server": "service_healthy"},
    }


def test_compose_dagster_services_mount_the_compose_instance(compose):
    dagster_home = compose["services"]["code_server"]["environment"]["DAGSTER_HOME"]
    for service in DAGSTER_SERVICES:
        assert f"./compose/dagster.yaml:{dagster_home}/dagster.yaml:ro" in compose["services"][service]["volumes"]


# -- compose: the DockerRunLauncher instance ------------------------------------------------------


def test_compose_instance_differs_from_deploy_instance_only_in_run_launcher(instance, compose_instance):
    assert {k: v for k, v in compose_instance.items() if k != "run_launcher"} == \
        {k: v for k, v in instance.items() if k != "run_launcher"}
    assert instance["run_launcher"]["class"] == "DefaultRunLauncher"
    assert (compose_instance["run_launcher"]["module"], compose_instance["run_launcher"]["class"]) == \
        ("dagster_docker", "DockerRunLauncher")


@pytest.mark.parametrize("path", [topology.INSTANCE_CONFIG, DEPLOY / "compose" / "dagster.yaml"],
                         ids=["deploy", "compose"])
def test_instance_files_pass_dagsters_schema(path, tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_bytes(path.read_bytes())
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_run_containers_get_the_image_network_names_and_warehouse(compose, compose_instance):
    launcher = compose_instance["run_launcher"]["config"]
    code_server = compose["services"]["code_server"]
    assert launcher["image"] == code_server["image"]
    assert launcher["network"] == compose["networks"]["default"]["name"]
    assert len(launcher["env_vars"]) == len(set(launcher["env_vars"]))
    assert set(launcher["env_vars"]) == set(topology.service_variables("code_server")) - OMITTED
    # The warehouse: the code server's volume, at CHURN_DATA_DIR, in every run container too.
    data_dir = code_server["environment"]["CHURN_DATA_DIR"]
    volume = compose["volumes"]["warehouse"]["name"]
    assert f"warehouse:{data_dir}" in code_server["volumes"]
    assert launcher["container_kwargs"]["volumes"] == {volume: {"bind": data_dir, "mode": "rw"}}


# -- the image ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in logical.splitlines() if line.strip()]


def runs() -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]


def env_of_image() -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def test_image_base_and_no_entrypoint():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert "ENTRYPOINT" not in {instruction for instruction, _ in instructions}


def test_image_installs_the_lock_then_the_package_without_dependencies():
    steps = runs()
    lock = next(i for i, run in enumerate(steps) if "pip install --no-cache-dir -r requirements.lock" in run)
    launcher = next(i for i, run in enumerate(steps) if "requirements-${RUN_LAUNCHER}.txt" in run)
    package = next(i for i, run in enumerate(steps) if re.search(r"pip install .*--no-deps.* -e \.", run))
    assert lock < launcher < package
    assert "--no-deps" in steps[launcher]
    assert "pip check" in steps[package]


def test_image_builds_the_dbt_manifest():
    parse = [run for run in runs() if "dbt parse" in run]
    assert len(parse) == 1
    assert "CHURN_DATA_DIR=" in parse[0]
    assert "--project-dir dbt_project --profiles-dir dbt_project --target duckdb" in parse[0]
    assert "manifest.json" in parse[0]


def test_image_turns_telemetry_off():
    env = env_of_image()
    assert {name: env.get(name) for name in topology.OFFLINE_VARS} == OFFLINE_ENV


def test_image_holds_the_instance_and_runs_from_deploy(compose, helm):
    instructions = dockerfile_instructions()
    dagster_home = env_of_image()["DAGSTER_HOME"]
    assert ("COPY", f"deploy/dagster.yaml {dagster_home}/dagster.yaml") in instructions
    assert dagster_home == compose["services"]["code_server"]["environment"]["DAGSTER_HOME"]
    assert dagster_home == helm["global"]["dagsterHome"]
    workdirs = [args for instruction, args in instructions if instruction == "WORKDIR"]
    assert ("COPY", "deploy deploy") in instructions
    assert workdirs[-1] == f"{workdirs[0]}/deploy"  # `-w workspace.yaml` resolves, as under `make stack`
    assert (topology.DEPLOY_DIR / topology.WORKSPACE.name).exists()


def test_image_runs_as_a_numeric_non_root_user():
    users = [args for instruction, args in dockerfile_instructions() if instruction == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1])


def test_image_default_command_is_the_code_server():
    cmd = [args for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    assert json.loads(cmd[-1]) == expected_command("code_server")


def test_launcher_packages_are_pinned_twins_outside_the_lock():
    def pins(path: Path) -> dict[str, str]:
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return {name.lower(): version for name, version in (line.split("==") for line in lines if line)}

    lock = pins(PROJECT_ROOT / "requirements.lock")
    arg = next(args for instruction, args in dockerfile_instructions() if instruction == "ARG")
    assert arg == "RUN_LAUNCHER=docker"
    for launcher, package in (("docker", "dagster-docker"), ("k8s", "dagster-k8s")):
        extra = pins(DEPLOY / f"requirements-{launcher}.txt")
        assert extra[package] == lock["dagster-aws"]  # the library twin of the locked dagster
        assert not set(extra) & set(lock)


# -- Helm ------------------------------------------------------------------------------------------


def names_mentioned(node) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(names_mentioned(k) | names_mentioned(v) for k, v in node.items()))
    if isinstance(node, list):
        return set().union(*(names_mentioned(item) for item in node))
    return set(NAME_MENTION.findall(node)) if isinstance(node, str) else set()


def test_helm_launches_on_kubernetes_with_external_postgres(helm, instance):
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm["postgresql"]["enabled"] is False
    assert helm["generatePostgresqlPasswordSecret"] is False
    assert helm["global"]["postgresqlSecretName"]
    assert helm["postgresql"]["postgresqlUsername"] == topology.POSTGRES_USER
    assert helm["postgresql"]["postgresqlDatabase"] == topology.DAGSTER_DB
    assert helm["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]


def test_helm_names_are_topologys(helm):
    mentioned = names_mentioned(helm)
    assert mentioned, "the values name no variable at all"
    assert mentioned <= ALL_NAMES, mentioned - ALL_NAMES


def test_helm_code_location_gets_topologys_environment(helm):
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    secret_names = {secret["name"] for secret in deployment["envSecrets"]}
    assert secret_names == {"churn-platform-aws"}
    assert not {name for name in deployment["env"] if SECRET_NAME.search(name)}
    assert set(deployment["env"]) | HELM_AWS_SECRET == \
        set(topology.service_variables("code_server")) - OMITTED - HELM_CHART_OWNED
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # run pods get the same
    for service in ("dagsterWebserver", "dagsterDaemon"):
        assert set(helm[service]["env"]) <= set(deployment["env"])
        assert helm[service]["envSecrets"] == deployment["envSecrets"]


def test_helm_code_server_is_topologys(helm):
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    # The chart runs `dagster code-server start -h 0.0.0.0 -p <port> <codeServerArgs>`.
    chart_argv = ["dagster", "code-server", "start", "-h", HOST, "-p", str(deployment["port"]),
                  *deployment["codeServerArgs"]]
    expected = expected_command("code_server")

    def options(argv: list[str]) -> dict[str, str]:
        return dict(zip(argv[3::2], argv[4::2]))

    assert chart_argv[:3] == expected[:3]
    assert options(chart_argv) == options(expected)
    assert len(chart_argv) == len(expected)


def test_helm_one_image_for_every_dagster_process(helm):
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    images = [helm["dagsterWebserver"]["image"], helm["dagsterDaemon"]["image"], deployment["image"]]
    assert all((image["repository"], image["tag"]) == (images[0]["repository"], images[0]["tag"])
               for image in images)


def test_helm_instance_blocks_are_deploy_instances(helm, instance):
    snake = {"bucket": "bucket", "prefix": "prefix", "skipEmptyFiles": "skip_empty_files",
             "uploadInterval": "upload_interval"}
    logs = helm["computeLogManager"]
    assert logs["type"] == instance["compute_logs"]["class"] == "S3ComputeLogManager"
    assert {snake[key]: value for key, value in logs["config"]["s3ComputeLogManager"].items()} == \
        instance["compute_logs"]["config"]
    extra = helm["additionalInstanceConfig"]
    assert extra["concurrency"] == instance["concurrency"]
    assert extra["run_monitoring"] == instance["run_monitoring"]
    assert extra["freshness"] == instance["freshness"] == {"enabled": True}
    assert helm["dagsterDaemon"]["runMonitoring"]["enabled"] is False  # else the chart renders a second block
    assert helm["dagsterDaemon"]["runCoordinator"]["type"] == instance["run_coordinator"]["class"]
    assert helm["telemetry"]["enabled"] is instance["telemetry"]["enabled"] is False


# -- the README and `make stack` ------------------------------------------------------------------


def test_readme_table_lists_exactly_topologys_names():
    listed = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", (DEPLOY / "README.md").read_text(), re.MULTILINE)
    assert len(listed) == len(set(listed))
    assert set(listed) == ALL_NAMES


def test_make_stack_sets_exactly_topologys_names(tmp_path):
    """The other half of the contract: `make stack` gives each service topology's names."""
    from churn_platform.dev.production_stack import _OWNED_PREFIXES, ProductionStack
    from churn_platform.settings import START_DATE_FILE

    layout = topology.Layout(tmp_path)
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "password").write_text("test-only")
    layout.data_dir.mkdir()
    (layout.data_dir / START_DATE_FILE).write_text("2026-01-01")
    stack = ProductionStack(layout, s3_endpoint="http://127.0.0.1:9")

    def configuring(env: dict[str, str]) -> set[str]:
        return {name for name in env if name.startswith(_OWNED_PREFIXES) or name in topology.OFFLINE_VARS}

    assert configuring(stack.mlflow_env()) == set(topology.service_variables("mlflow"))
    assert configuring(stack.dagster_env()) == set(topology.service_variables("code_server"))
