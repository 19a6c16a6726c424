"""churn-platform: raw product events in S3 to a weekly, quality-gated churn model."""

from churn_platform.definitions import defs

__all__ = ["defs"]
