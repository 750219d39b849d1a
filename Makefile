# Set-up and everyday tasks. Every target creates the virtual environment on first use.
#
# Python 3.11 and 3.12: pyDatalog 0.22.4 ships its compiled engine for 3.11-3.13 (on 3.14 pip would
# take the pure-Python one, about 100 times slower), and under 3.13.0 a batch run with worker
# processes segfaulted (tests/fuzz/test_fuzz_batch.py). Keep in step with requires-python.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PY_SUPPORTED := 3.11 3.12

version = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PY_VERSION   := $(call version,$(PYTHON))
VENV_VERSION := $(call version,$(BIN)/python)
# One stamp per interpreter version: a venv made by another Python (or a failed install) has none.
STAMP := $(VENV)/.installed-py$(PY_VERSION)

.PHONY: demo test lint test-smoke fuzz check site bench differential clean

$(STAMP): pyproject.toml
	@if [ -z "$(filter $(PY_VERSION),$(PY_SUPPORTED))" ]; then \
	  echo "PolicyKB needs Python $(firstword $(PY_SUPPORTED)) to $(lastword $(PY_SUPPORTED));" \
	       "PYTHON=$(PYTHON) is $(or $(PY_VERSION),not found)." >&2; \
	  echo "Install one and run, e.g.: make PYTHON=python3.11 $(or $(MAKECMDGOALS),demo)" >&2; \
	  exit 2; \
	fi
	@if [ -e $(VENV) ] && [ "$(VENV_VERSION)" != "$(PY_VERSION)" ]; then \
	  echo "$(VENV) was made by Python $(or $(VENV_VERSION),that is gone); rebuilding it with $(PY_VERSION)"; \
	  rm -rf $(VENV); \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip || { rm -rf $(VENV); exit 1; }
	$(BIN)/pip install --quiet -e '.[test,bench]' || { rm -rf $(VENV); exit 1; }
	touch $@

demo: $(STAMP)                     ## explain a bundled example claim
	$(BIN)/policykb explain examples/office-96372-with-em.json

test: lint                         ## the gates, then every test (conformance, policies, docs, browser, short fuzz)
	$(BIN)/python -m pytest

lint: $(STAMP)                     ## ruff (lint and format) and mypy on engine/ and benchmarks/
	$(BIN)/ruff check engine benchmarks
	$(BIN)/ruff format --check engine benchmarks
	$(BIN)/mypy

test-smoke: $(STAMP)               ## a quick subset (claims, CLI, engine, policy cases, short fuzz), e.g. on another Python
	$(BIN)/python -m pytest tests/test_claims.py tests/test_claim_schema.py tests/test_cli.py tests/test_cli_input.py \
	  tests/test_engine.py tests/test_policy_cases.py tests/fuzz

fuzz: $(STAMP)                     ## the property tests with a long budget (HYPOTHESIS_PROFILE=long)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest tests/fuzz

check: $(STAMP)                    ## check the KB
	$(BIN)/policykb check kb

site: $(STAMP)                     ## build the HTML into build/html (pages generated from the KB)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)                    ## the benchmark against its baselines
	$(BIN)/python -m benchmarks.run

differential: $(STAMP)             ## DuckDB and pyDatalog on 5,000 generated claims: must agree
	$(BIN)/python -m benchmarks.differential --claims 5000

clean:
	rm -rf $(VENV) .venv-py3.* build .pytest_cache .hypothesis
