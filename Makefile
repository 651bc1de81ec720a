# Two commands set everything up on a fresh clone: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MANIFEST := transforms/target/manifest.json
export RECSYS_HOME ?= $(CURDIR)/.recsys
export DAGSTER_HOME ?= $(RECSYS_HOME)/dagster
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# MLflow draws a progress bar per artifact download, tens of lines in the demo's output.
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR ?= false

.PHONY: install demo test ui clean manifest benchmarks

$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins every transitive version we test with; pyproject keeps compatible ranges.
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# dagster-dbt reads the dbt manifest when the definitions load, so build it once at install time.
$(MANIFEST): $(STAMP) $(shell find transforms \( -name '*.sql' -o -name '*.yml' \) -not -path '*/target/*' 2>/dev/null)
	cd transforms && RECSYS_WAREHOUSE=$(RECSYS_HOME)/parse/warehouse.duckdb ../$(VENV)/bin/dbt parse --quiet --profiles-dir . --target-path target
	touch $(MANIFEST)

install: $(STAMP) $(MANIFEST)

manifest: $(MANIFEST)

demo: install
	$(PY) -m orchestration.apps.demo

test: install
	$(PY) -m pytest

ui: install
	$(PY) -m orchestration.apps.instance
	$(VENV)/bin/dagster dev -w workspace.yaml

clean:
	rm -rf $(RECSYS_HOME) transforms/target transforms/logs
