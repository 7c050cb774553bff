# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on first use. torch is pinned to the local CPU build so a CPU machine never
# pulls CUDA wheels; GPU users install their own torch and then `pip install -e .`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.isaerft-installed

.PHONY: setup demo test lint typecheck docs unit clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/isaerft demo

lint: $(STAMP)
	$(BIN)/ruff check isaerft tests benchmarks
	$(BIN)/ruff format --check isaerft tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

unit: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck docs unit

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
