"""The local instance's pool limits (dagster.yaml can only set the default)."""

import dagster as dg

from churn_platform.constants import PROMOTION_POOL, TRAINING_POOL
from churn_platform.dev.instance import configure_pools, install_instance_config


def test_configure_pools_sets_training_and_promotion_limits(settings, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))  # configure_pools sets it; restored after
    install_instance_config(settings)
    configure_pools(settings)
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert storage.get_concurrency_info(TRAINING_POOL).slot_count == 4
        assert storage.get_concurrency_info(PROMOTION_POOL).slot_count == 1
