-- Run once by the postgres image on an empty data volume (deploy/compose.yaml), as POSTGRES_USER.
-- POSTGRES_DB creates `dagster`; MLflow's backend store gets its own database.
CREATE DATABASE mlflow;
