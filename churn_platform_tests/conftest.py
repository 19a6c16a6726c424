"""Shared fixtures: a real S3 server on loopback, a temporary warehouse, offline settings."""

import itertools

import pytest

from churn_platform.dev.local_s3 import local_s3_server
from churn_platform.dev.s3 import ensure_bucket, s3_client
from churn_platform.settings import Settings
from churn_platform.telemetry import OFFLINE_ENV
from churn_platform_tests.helpers import DEMO_DAYS, DEMO_END, DEMO_USERS, K, K_MINUS_4, demo_env, materialize

_bucket_ids = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def offline():
    """Nothing in the suite phones home: the opt-out variables for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 HTTP server on a free loopback port, shared by the session."""
    with local_s3_server(port=0) as endpoint:
        yield endpoint


@pytest.fixture
def settings(tmp_path, s3_endpoint) -> Settings:
    """Settings for one test: own bucket, own data dir, local S3."""
    bucket = f"landing-{next(_bucket_ids)}"
    env = {
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CHURN_LANDING_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "CHURN_START_DATE": "2024-01-01",
    }
    resolved = Settings.from_env(env)
    ensure_bucket(s3_client(s3_endpoint), bucket)
    return resolved


@pytest.fixture
def s3(settings):
    return s3_client(settings.s3_endpoint_url)


@pytest.fixture(scope="session")
def ingested_demo(tmp_path_factory, s3_endpoint):
    """Generated events landed in S3 and ingested (raw_events + daily activity) in one run."""
    import dagster as dg

    from churn_platform.definitions import build_definitions
    from churn_platform.dev.landing import land_demo_events
    from churn_platform.jobs import INGEST_JOB

    data_dir = tmp_path_factory.mktemp("ingested") / "data"
    settings = Settings.from_env(demo_env(data_dir, s3_endpoint, "demo-landing"))
    land_demo_events(settings, DEMO_USERS, DEMO_DAYS, DEMO_END, 11)
    result = build_definitions(settings).resolve_job_def(INGEST_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": settings.start_date.isoformat(),
            "dagster/asset_partition_range_end": DEMO_END.isoformat(),
        },
    )
    assert result.success
    return settings


@pytest.fixture
def demo_settings(ingested_demo, tmp_path) -> Settings:
    """A private copy of the ingested warehouse: tests may write to it freely."""
    import shutil

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(ingested_demo.warehouse_path, data_dir / "warehouse.duckdb")
    return ingested_demo.with_overrides(data_dir=data_dir, mlflow_tracking_uri=f"sqlite:///{data_dir}/mlflow.db")


@pytest.fixture(scope="session")
def training_inputs(ingested_demo, tmp_path_factory):
    """A warehouse with the features of K-4 and K and the labels of K, built once (read it, copy it)."""
    import shutil

    data_dir = tmp_path_factory.mktemp("training_inputs")
    shutil.copy(ingested_demo.warehouse_path, data_dir / "warehouse.duckdb")
    settings = ingested_demo.with_overrides(data_dir=data_dir)
    assert materialize(settings, ["user_features"], K_MINUS_4).success
    assert materialize(settings, ["user_features", "churn_labels"], K).success
    return settings.warehouse_path


STACK_SUITE = "churn_platform_tests/stack/"
E2E_SUITE = "churn_platform_tests/e2e/"
# Slowest first: `make test` runs on two xdist workers, which take files in collection order.
FIRST = (STACK_SUITE, "churn_platform_tests/spark/", E2E_SUITE)


def _work_unit(nodeid: str) -> str:
    """What one xdist worker runs whole: a file (its module fixtures start once), the
    production-stack suite (its session stack starts once) or the e2e suite (its `dagster dev`
    serves the whole package)."""
    path = nodeid.split("::", 1)[0]
    return next((suite for suite in (STACK_SUITE, E2E_SUITE) if path.startswith(suite)), path)


def pytest_collection_modifyitems(items):
    def rank(item):
        return next((i for i, prefix in enumerate(FIRST) if item.nodeid.startswith(prefix)), len(FIRST))

    items.sort(key=rank)  # stable: each file keeps its own order


def pytest_xdist_make_scheduler(config, log):
    """xdist's `loadscope`, with `_work_unit` as the scope (its `loadgroup` cannot tag tests
    under pytest 9, whose node ids it no longer rewrites)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return ByWorkUnit(config, log)
