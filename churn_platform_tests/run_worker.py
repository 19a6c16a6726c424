"""One run in its own process, started on a signal: concurrency tests need real processes,
since threads of one process share DuckDB's file lock and never clash on it.

    python -m churn_platform_tests.run_worker PARTITION ASSET [ASSET ...]

Settings and the Dagster instance come from the environment (CHURN_*, DAGSTER_HOME). Prints
`ready` once the definitions are built, runs when a line arrives on stdin, exits 0 on success.
"""

import sys

import dagster as dg

from churn_platform.definitions import build_definitions
from churn_platform.settings import Settings


def main(partition: str, assets: list[str]) -> int:
    job = build_definitions(Settings.from_env()).resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(a) for a in assets}
    )
    with dg.DagsterInstance.get() as instance:
        print("ready", flush=True)
        sys.stdin.readline()
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
    for event in result.all_events:
        if event.is_step_failure:
            print(f"{event.step_key}: {event.step_failure_data.error.to_string()}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
