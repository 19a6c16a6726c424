"""A lease on the `champion` alias, so promotions and rollbacks move it one at a time.

MLflow has no compare-and-set on aliases, and the Dagster `promotion` pool serializes only on
instances that configure it. Creating a registered model is atomic in every store (names are
unique), so the lease is a registered model that exists while its holder checks and moves the
alias. A holder that died leaves it behind: the same holder (a retried promotion of the same
challenger) takes it back at once, anyone else once it expires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn_platform.constants import REGISTERED_MODEL_NAME
from churn_platform.ml.mlflow_io import DEFAULT_RETRY, MlflowRetry, call_with_retry

# A promotion holds the lease for seconds; a dead holder blocks others this long at most.
LEASE_TTL = dt.timedelta(minutes=10)
TAG_HOLDER = "holder"
TAG_EXPIRES_AT = "expires_at"
_TAKE_ATTEMPTS = 3


class ChampionChangedError(RuntimeError):
    """The champion changed, or is being changed, since the comparison: compare again."""


def lease_name(model_name: str = REGISTERED_MODEL_NAME) -> str:
    return f"{model_name}.champion_lease"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _take(client: MlflowClient, name: str, holder: str, ttl: dt.timedelta, retry: MlflowRetry) -> None:
    for _ in range(_TAKE_ATTEMPTS):
        try:
            call_with_retry(
                client, "take the champion lease", client.create_registered_model, name,
                tags={TAG_HOLDER: holder, TAG_EXPIRES_AT: (_now() + ttl).isoformat(timespec="seconds")},
                description="Held while the champion alias is checked and moved; deleted after.",
                retry=retry,
            )
            return
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = call_with_retry(
                client, "read the champion lease", client.get_registered_model, name, retry=retry
            ).tags
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            continue  # released in between: try again
        if held.get(TAG_HOLDER) == holder:
            return  # left behind by this holder's earlier attempt
        expires_at = dt.datetime.fromisoformat(held[TAG_EXPIRES_AT])
        if expires_at > _now():
            raise ChampionChangedError(
                f"{held.get(TAG_HOLDER)} is changing the champion (lease {name!r} until "
                f"{expires_at.isoformat()}); compare again once it is done"
            )
        _release(client, name, retry)  # expired: its holder died
    raise ChampionChangedError(f"the champion lease {name!r} kept changing hands; compare again")


def _release(client: MlflowClient, name: str, retry: MlflowRetry) -> None:
    try:
        call_with_retry(client, "release the champion lease", client.delete_registered_model, name, retry=retry)
    except MlflowException as err:
        # Another attempt of the same holder released it first.
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


@contextmanager
def champion_lease(
    client: MlflowClient,
    holder: str,
    model_name: str = REGISTERED_MODEL_NAME,
    *,
    retry: MlflowRetry = DEFAULT_RETRY,
    ttl: dt.timedelta = LEASE_TTL,
) -> Iterator[None]:
    """Hold the lease on model_name's champion for the block; ChampionChangedError if another holds it."""
    name = lease_name(model_name)
    _take(client, name, holder, ttl, retry)
    try:
        yield
    except BaseException as err:
        try:
            _release(client, name, retry)
        except Exception as release_error:
            err.add_note(f"releasing the champion lease {name!r} also failed: {release_error}")
        raise
    _release(client, name, retry)
