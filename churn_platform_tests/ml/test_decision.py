import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from churn_platform.ml.registry import (
    MlflowUnavailableError,
    RetryPolicy,
    call_with_retry,
    connect,
    decide_promotion,
)


def test_no_champion_promotes():
    decision = decide_promotion(0.61, None)
    assert decision.promote and decision.delta is None
    assert "no champion" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.820, 0.800, True),
        (0.804, 0.800, False),
        (0.700, 0.800, False),
        (0.705, 0.700, True),  # exactly the threshold, though 0.705 - 0.700 < 0.005 in floats
        (0.805, 0.800, True),
        (0.7049, 0.700, False),
    ],
)
def test_threshold(challenger, champion, promote):
    decision = decide_promotion(challenger, champion)
    assert decision.promote is promote
    assert decision.delta == pytest.approx(challenger - champion)
    assert ("promoted" if promote else "champion kept") in decision.reason


def test_min_delta_is_configurable():
    assert not decide_promotion(0.81, 0.80, min_delta=0.02).promote
    assert decide_promotion(0.81, 0.80, min_delta=0.0).promote


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.1])
def test_invalid_auc_is_an_error(bad):
    with pytest.raises(ValueError):
        decide_promotion(bad, 0.8)
    with pytest.raises(ValueError):
        decide_promotion(0.8, bad)


FAST = RetryPolicy(attempts=3, base_delay_seconds=0.001, max_delay_seconds=0.002)


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
