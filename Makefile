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

.PHONY: install dev test demo bench mlflow-ui clean

install: $(VENV)/.installed $(MANIFEST)

# requirements-dev.lock includes requirements.lock (runtime) and adds moto, pytest and dg.
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The dbt manifest is prepared here, never when Dagster imports the code.
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	mkdir -p $(CHURN_DATA_DIR)
	$(BIN)/dbt parse --quiet --project-dir dbt_project --profiles-dir dbt_project --target local
	touch $@

dev: install
	$(BIN)/churn-platform dev

test: install
	scripts/ensure_chromium.sh
	$(BIN)/dg check defs
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/churn-platform demo

bench: install
	$(BIN)/python -m bench $(SCALE)

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CHURN_DATA_DIR)/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) dbt_project/target .pytest_cache
