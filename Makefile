# Set-up and everyday tasks. Every target creates the virtual environment on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test check site bench clean

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

site: $(BIN)/.installed            ## build the HTML into build/html (pages generated from the KB)
	$(BIN)/mkdocs build --strict

bench: $(BIN)/.installed           ## the benchmark against its baselines
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build .pytest_cache
