"""churn-platform: raw product events in S3 to a weekly, quality-gated churn model.

The Dagster code location is `churn_platform.definitions`; importing this package
imports nothing else (local tools under `churn_platform.dev` stay light).
"""
