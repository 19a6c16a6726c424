"""Benchmarks of the churn platform against its floors and the pandas + GradientBoosting baseline.

`python -m bench [S] [M] [L]` (or `make bench SCALE="S M"`) generates events at each
scale, lands them in a loopback S3, runs the platform's Dagster jobs and the reference
paths each in a fresh child process, and writes `bench/results/<date>.md`.
"""
