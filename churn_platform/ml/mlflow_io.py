"""MLflow plumbing (docs/contract.md §4, §6): the client, retries with backoff, global URI scopes.

Every function of `churn_platform.ml` that talks to MLflow takes an explicit `MlflowClient`
(build it with `connect`), wraps each operation in `call_with_retry`, and leaves MLflow's
process-wide state as it found it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking._model_registry import utils as registry_globals
from mlflow.tracking._tracking_service import utils as tracking_globals
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout

from churn_platform.redaction import redact_text, redact_url

T = TypeVar("T")

# Errors worth another attempt: connection failures surface as INTERNAL_ERROR
# from the REST store, a locked sqlite store as TEMPORARILY_UNAVAILABLE.
_TRANSIENT_ERROR_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
)
_TRANSIENT_EXCEPTIONS = (ConnectionError, TimeoutError, RequestsConnectionError, RequestsTimeout)
_URI_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_FLUENT_LOCK = threading.RLock()


class MlflowUnavailableError(RuntimeError):
    """The tracking server kept failing after every retry."""


@dataclass(frozen=True)
class MlflowRetry:
    """Exponential backoff with jitter: after the n-th failure, wait between c/2 and c
    seconds, c = min(max_delay, base_delay * 2**(n-1))."""

    attempts: int = 4
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0

    def delay(self, failed_attempts: int) -> float:
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failed_attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY = MlflowRetry()


def is_transient(err: BaseException) -> bool:
    """Whether a failure may pass on its own (server down, store locked), so is worth a retry."""
    if isinstance(err, MlflowException):
        return err.error_code in _TRANSIENT_ERROR_CODES
    return isinstance(err, _TRANSIENT_EXCEPTIONS)


def version_number(version: ModelVersion | str | int) -> str:
    """A version number as a string: the sqlite store returns ints, REST and tags strings."""
    return str(version.version if isinstance(version, ModelVersion) else version)


def connect(tracking_uri: str) -> MlflowClient:
    """Client whose registry is the tracking store (docs/contract.md §6).

    Passing registry_uri explicitly keeps MLFLOW_REGISTRY_URI or a stray
    mlflow.set_registry_uri() elsewhere in the process from redirecting the registry.
    """
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def call_with_retry(
    client: MlflowClient,
    what: str,
    fn: Callable[..., T],
    *args,
    retry: MlflowRetry = DEFAULT_RETRY,
    **kwargs,
) -> T:
    """Call fn, retrying transient MLflow failures; other errors propagate at once.

    MLflow's REST client retries each HTTP request on its own too
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES); this layer covers whole operations and the sqlite store.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn(*args, **kwargs)
        except (MlflowException, *_TRANSIENT_EXCEPTIONS) as err:
            if not is_transient(err):
                raise
            last_error: Exception = err
        if attempt < retry.attempts:
            time.sleep(retry.delay(attempt))
    cause = f"{type(last_error).__name__}: {last_error}"
    error = MlflowUnavailableError(
        f"MLflow at {redact_url(client.tracking_uri)} failed to {what} after {retry.attempts} attempts: "
        f"{redact_text(cause)}"
    )
    # The client's own error repeats the URL: chain it only when it carries no credentials.
    raise error from (last_error if redact_text(cause) == cause else None)


@contextmanager
def fluent_uris(client: MlflowClient) -> Iterator[None]:
    """Point MLflow's process-global URIs at this client's stores, then restore them.

    mlflow.sklearn.log_model and load_model only read the global URIs.
    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, so
    the variables are restored too. The lock keeps threads of this process from
    interleaving scopes; Dagster's default executor runs each step in its own process.
    """
    with _FLUENT_LOCK:
        saved_tracking = tracking_globals._tracking_uri
        saved_registry = registry_globals._registry_uri
        saved_env = {name: os.environ.get(name) for name in _URI_ENV_VARS}
        # MlflowClient has no public accessor for its registry URI.
        mlflow.set_tracking_uri(client.tracking_uri)
        mlflow.set_registry_uri(client._registry_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking)
            mlflow.set_registry_uri(saved_registry)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
