# Set-up and everyday tasks. Every target creates the virtual environment on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test check site bench differential clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

demo: $(BIN)/.installed            ## explain a bundled example claim
	$(BIN)/policykb explain examples/office-96372-with-em.json

test: $(BIN)/.installed            ## run every test (conformance, policies, docs, browser)
	$(BIN)/python -m pytest

check: $(BIN)/.installed           ## check the KB
	$(BIN)/policykb check kb

site: $(BIN)/.installed            ## regenerate site/ and build the HTML into build/html
	$(BIN)/policykb docs
	$(BIN)/mkdocs build --strict

bench: $(BIN)/.installed           ## the benchmark against its baselines
	$(BIN)/python -m benchmarks.run

differential: $(BIN)/.installed    ## DuckDB and pyDatalog on 5,000 generated claims: must agree
	$(BIN)/python -m benchmarks.differential --claims 5000

clean:
	rm -rf $(VENV) build .pytest_cache
