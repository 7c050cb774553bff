# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on first use. torch is pinned to the local CPU build so a CPU machine never
# pulls CUDA wheels; GPU users install their own torch and then `pip install -e .`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.isaerft-installed

.PHONY: setup demo test lint typecheck docs unit interop clean

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

# Opt-in, never part of `make test`: the llama.cpp round trip (docs/interop.md). The first run
# builds llama.cpp from the llama-cpp-python sdist (CPU only, no BLAS, 2 parallel jobs, niced);
# the stamp keeps later runs from rebuilding. The sdist's converter (convert_hf_to_gguf.py and
# its gguf-py) is kept in $(LLAMA_SRC) so the model is converted by the same llama.cpp source.
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_SDIST := llama_cpp_python-$(LLAMA_CPP_PYTHON)
LLAMA_SRC := $(VENV)/src/llama-cpp-python
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_PYTHON)-installed
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF

$(LLAMA_STAMP): | $(STAMP)
	rm -rf $(LLAMA_SRC) && mkdir -p $(LLAMA_SRC)
	$(BIN)/pip download -q --no-binary :all: --no-deps -d $(LLAMA_SRC) llama-cpp-python==$(LLAMA_CPP_PYTHON)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		nice -n 19 $(BIN)/pip install -q $(LLAMA_SRC)/$(LLAMA_SDIST).tar.gz
	tar -xzf $(LLAMA_SRC)/$(LLAMA_SDIST).tar.gz -C $(LLAMA_SRC) --strip-components=1 \
		$(LLAMA_SDIST)/CHANGELOG.md $(LLAMA_SDIST)/vendor/llama.cpp/convert_hf_to_gguf.py \
		$(LLAMA_SDIST)/vendor/llama.cpp/conversion $(LLAMA_SDIST)/vendor/llama.cpp/gguf-py
	rm $(LLAMA_SRC)/$(LLAMA_SDIST).tar.gz
	touch $@

interop: $(LLAMA_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.interop_llama_cpp

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache
