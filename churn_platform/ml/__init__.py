"""Churn model core: training and the MLflow registry workflow, free of Dagster."""
