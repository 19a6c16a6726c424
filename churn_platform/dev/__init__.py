"""Local tooling, outside the code location: the CLI, demo data, the local S3 server, `make dev`.

Nothing here is imported by `churn_platform.definitions`; a production image never needs it.
"""
