# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHECKED := simlab tests benchmarks

.PHONY: run compare test lint format bench bench-wrk profile clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

## The main job: every model side by side on the built-in C10K scenario.
run: $(STAMP)
	$(BIN)/simlab compare

compare: run

## Lint, types and the whole test suite.
test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy simlab

format: $(STAMP)
	$(BIN)/ruff format $(CHECKED)
	$(BIN)/ruff check --fix $(CHECKED)

## Speed against SimPy and Ciw, and the real async server against uvicorn
## (not tests: each prints ratios measured side by side in one run; needs wrk).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_suite.py
	$(BIN)/python benchmarks/bench_server_vs_uvicorn.py

profile: $(STAMP)
	$(BIN)/python benchmarks/profile_hot_path.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info

## simlab's load generator against wrk (needs: apt-get install wrk).
bench-wrk: $(STAMP)
	$(BIN)/python benchmarks/bench_loadgen_vs_wrk.py
