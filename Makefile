# churn-platform: `make dev` runs it, `make test` tests it. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

export CHURN_DATA_DIR ?= $(CURDIR)/.data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_DISABLE_TELEMETRY := true
export PATH := $(BIN):$(PATH)

DBT_SOURCES := $(shell find dbt_project -name '*.sql' -o -name '*.yml' 2>/dev/null | grep -v -e /target/ -e /logs/)
MANIFEST := dbt_project/target/manifest.json

.PHONY: install install-spark dev stack postgres test demo bench bench-stack bench-latency mlflow-ui clean

install: $(VENV)/.installed $(MANIFEST)

# The Spark engine's packages (requirements-spark.lock): needed by `make test`, and by the other
# targets only when CHURN_ENGINE=spark, so `make dev` stays a DuckDB-sized install.
install-spark: $(VENV)/.spark-installed
SPARK_IF_CHOSEN := $(if $(filter spark,$(CHURN_ENGINE)),install-spark)

# Then a class archive of Spark's JVM classes, so each local Spark process starts faster.
$(VENV)/.spark-installed: requirements-spark.lock $(VENV)/.installed churn_platform/spark/class_archive.py
	$(UV) install --python $(BIN)/python -r requirements-spark.lock
	$(BIN)/python -m churn_platform.spark.class_archive
	$(BYTECODE) $(SITE_PACKAGES)
	touch $@

# Bytecode is compiled here, once, not by each process that imports a module: with
# PYTHONDONTWRITEBYTECODE set (as in this project's CI environment) Python never writes .pyc files, and every
# dbt call, run worker and code server recompiled dbt, Dagster and MLflow from source
# (`import churn_platform.definitions`: 15 s without bytecode, 6-7 s with it).
BYTECODE := $(BIN)/python -m compileall -q -j 0
SITE_PACKAGES = $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
OUR_SOURCES := churn_platform churn_platform_tests bench

# requirements-dev.lock includes requirements.lock (runtime) and adds moto, pytest and dg.
# uv installs the locked set in ~25 s where pip takes ~2.5 min; pip only bootstraps uv.
UV_VERSION := 0.13.8
UV := $(BIN)/uv --quiet pip
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV) install --python $(BIN)/python -r requirements-dev.lock
	$(UV) install --python $(BIN)/python --no-deps -e .
	$(BYTECODE) $(SITE_PACKAGES)
	touch $@

# The dbt manifest is prepared here, never when Dagster imports the code.
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	mkdir -p $(CHURN_DATA_DIR)
	$(BIN)/dbt parse --quiet --project-dir dbt_project --profiles-dir dbt_project --target duckdb
	touch $@

dev: install $(SPARK_IF_CHOSEN)
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/churn-platform dev

# The production topology on loopback: PostgreSQL, MLflow server, Dagster code server, webserver
# and daemon (README, "Production"). Debian's PostgreSQL server is installed if missing.
stack: install $(SPARK_IF_CHOSEN) postgres
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/churn-platform stack

postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "installing PostgreSQL (Debian package postgresql) ..."; \
		  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q postgresql >/dev/null; }

# `dg check defs` loads an instance: the project's (telemetry off), not Dagster's default.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $@

test: install install-spark postgres $(DAGSTER_HOME)/dagster.yaml
	scripts/ensure_chromium.sh
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/dg check defs
	$(BIN)/python -m pytest -q -n 2 --durations=15

demo: install $(SPARK_IF_CHOSEN)
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/churn-platform demo

bench: install install-spark
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/python -m bench $(SCALE) --readme

# `make stack` timed as a new user meets it: fresh cluster and seed, UI ready, first sensor run.
bench-stack: install $(SPARK_IF_CHOSEN) postgres
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/python -m bench.stack_startup

# Seconds from a file landing to its raw_events partition materialized, event and listing mode.
bench-latency: install
	$(BYTECODE) $(OUR_SOURCES)
	$(BIN)/python -m bench.landing_latency

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CHURN_DATA_DIR)/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) dbt_project/target .pytest_cache
