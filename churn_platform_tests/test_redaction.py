"""Credentials in a tracking URI or S3 endpoint never reach the UI, links or error messages."""

import socket

import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster_shared.serdes import serialize_value

from churn_platform.definitions import build_definitions
from churn_platform.ml.mlflow_io import MlflowRetry, MlflowUnavailableError, call_with_retry, connect
from churn_platform.redaction import redact_url
from churn_platform.settings import Settings

SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize(
    "url, redacted",
    [
        (f"http://alice:{SECRET}@mlflow.internal:5000", "http://***@mlflow.internal:5000"),
        (f"https://token:{SECRET}@host/path?q=1", "https://***@host/path?q=1"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        (None, None),
    ],
)
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_resource_config_shown_in_the_ui_holds_no_credentials(monkeypatch, tmp_path):
    uri = f"http://alice:{SECRET}@127.0.0.1:{_closed_port()}"
    endpoint = f"http://bob:{SECRET}@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    settings = Settings.from_env({"MLFLOW_TRACKING_URI": uri, "AWS_ENDPOINT_URL_S3": endpoint,
                                  "CHURN_DATA_DIR": str(tmp_path), "CHURN_START_DATE": "2024-01-01"})
    assert SECRET not in repr(settings)
    defs = build_definitions(settings)
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "MLFLOW_TRACKING_URI" in snapshot  # the UI names the variable...
    assert SECRET not in snapshot  # ...never its value
    # At run time the resource still gets the real URI.
    registry = defs.resources["mlflow"].process_config_and_initialize()
    assert registry.tracking_uri == uri


def test_errors_name_the_server_without_its_credentials(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own HTTP retries
    client = connect(f"http://alice:{SECRET}@127.0.0.1:{_closed_port()}")
    with pytest.raises(MlflowUnavailableError) as raised:
        call_with_retry(client, "list experiments", client.search_experiments,
                        retry=MlflowRetry(attempts=2, base_delay_seconds=0.01))
    assert "***@127.0.0.1" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None  # the client's own error (which repeats the URL) is not chained
