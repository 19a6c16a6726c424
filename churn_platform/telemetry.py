"""Keep the platform offline: no usage statistics leave the machine (the project standards)."""

import os

OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DAGSTER_DISABLE_TELEMETRY": "true",
}


def disable_telemetry() -> None:
    """Set the opt-out variables unless the operator set them explicitly."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
