import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from churn_platform.ml.mlflow_io import (
    MlflowRetry,
    MlflowUnavailableError,
    call_with_retry,
    connect,
    is_transient,
)

FAST = MlflowRetry(attempts=3, base_delay_seconds=0.001, max_delay_seconds=0.002)


def test_retry_recovers_from_transient_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        return "ok"

    assert call_with_retry(connect("http://mlflow.invalid"), "test", flaky, retry=FAST) == "ok"
    assert len(calls) == 3


def test_retry_gives_up_with_the_uri_in_the_error():
    def down():
        raise ConnectionError("refused")

    with pytest.raises(MlflowUnavailableError, match=r"http://mlflow\.invalid.*3 attempts"):
        call_with_retry(connect("http://mlflow.invalid"), "reach it", down, retry=FAST)


def test_non_transient_errors_are_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise MlflowException("nope", error_code=RESOURCE_DOES_NOT_EXIST)

    with pytest.raises(MlflowException, match="nope"):
        call_with_retry(connect("http://mlflow.invalid"), "test", missing, retry=FAST)
    assert len(calls) == 1


def test_transient_means_down_or_locked_not_wrong():
    assert is_transient(MlflowException("locked", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient(TimeoutError())
    assert not is_transient(MlflowException("nope", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not is_transient(ValueError())


def test_backoff_doubles_up_to_the_cap_with_jitter():
    retry = MlflowRetry(attempts=6, base_delay_seconds=0.5, max_delay_seconds=2.0)
    for failed, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 2.0)]:
        assert ceiling / 2 <= retry.delay(failed) <= ceiling
