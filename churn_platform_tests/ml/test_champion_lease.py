"""The champion lease: one holder at a time, released on error, recoverable after a dead holder."""

import datetime as dt

import pytest
from mlflow.exceptions import MlflowException

from churn_platform.ml.champion_lease import (
    TAG_EXPIRES_AT,
    TAG_HOLDER,
    ChampionChangedError,
    champion_lease,
    lease_name,
)


def leave_lease(client, holder: str, expires_in: dt.timedelta) -> None:
    """A lease as a worker killed while holding it leaves it."""
    expires_at = dt.datetime.now(dt.timezone.utc) + expires_in
    client.create_registered_model(
        lease_name(), tags={TAG_HOLDER: holder, TAG_EXPIRES_AT: expires_at.isoformat(timespec="seconds")}
    )


def lease_exists(client) -> bool:
    try:
        client.get_registered_model(lease_name())
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return False
    return True


def test_a_held_lease_refuses_other_holders(mlflow_store):
    client, _ = mlflow_store
    with champion_lease(client, "promotion of v2"):
        with pytest.raises(ChampionChangedError, match="promotion of v2 is changing the champion"):
            with champion_lease(client, "promotion of v3"):
                pass
        assert lease_exists(client)
    assert not lease_exists(client)


def test_the_lease_is_released_when_the_block_fails(mlflow_store):
    client, _ = mlflow_store
    with pytest.raises(KeyError):
        with champion_lease(client, "promotion of v2"):
            raise KeyError("boom")
    assert not lease_exists(client)


def test_a_dead_holder_takes_its_lease_back_at_once(mlflow_store):
    client, _ = mlflow_store
    leave_lease(client, "promotion of v2", dt.timedelta(minutes=10))
    with champion_lease(client, "promotion of v2"):
        assert lease_exists(client)
    assert not lease_exists(client)


def test_an_expired_lease_of_a_dead_holder_is_taken_over(mlflow_store):
    client, _ = mlflow_store
    leave_lease(client, "promotion of v2", dt.timedelta(minutes=-1))
    with champion_lease(client, "promotion of v3"):
        assert client.get_registered_model(lease_name()).tags[TAG_HOLDER] == "promotion of v3"
    assert not lease_exists(client)
