# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHECKED := simlab tests benchmarks experiments app.py docs

.PHONY: run compare test lint docs format bench bench-wrk profile clean browser experiments

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,docs]'
	@touch $(STAMP)

## The main job: the dashboard on http://127.0.0.1:8501 (Ctrl-C stops it).
run: $(STAMP)
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port 8501 \
		--server.headless true --browser.gatherUsageStats false

## Every model side by side on the built-in C10K scenario, in the terminal.
compare: $(STAMP)
	$(BIN)/simlab compare

## Lint, types, the documentation and the whole test suite (the browser test needs chromium).
test: $(STAMP) lint docs browser
	$(BIN)/pytest

## Every experiment at full scale (writes data/experiments/<name>/).
experiments: $(STAMP)
	@set -e; for script in experiments/*.py; do \
		echo "== $$script"; $(BIN)/python $$script; \
	done

## Headless Chromium and its driver for the dashboard's browser test: installed
## with apt-get when missing and running as root; otherwise the test says how.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				chromium chromium-driver >/dev/null; \
		else \
			echo "note: chromium or chromedriver is missing; install them with:" \
				"sudo apt-get install chromium chromium-driver"; \
		fi; \
	fi

## The documentation site in site/ (MkDocs, strict: any warning fails the build).
## docs/cli.md's reference part is regenerated from the parser first (committed).
## NO_MKDOCS_2_WARNING silences a banner Material prints on every build.
docs: $(STAMP)
	$(BIN)/python docs/gen_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

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
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info

## simlab's load generator against wrk (needs: apt-get install wrk).
bench-wrk: $(STAMP)
	$(BIN)/python benchmarks/bench_loadgen_vs_wrk.py
