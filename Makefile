# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEPS   := $(VENV)/.deps
KERNELS := $(VENV)/.kernels
CHECKED := simlab tests benchmarks experiments app.py docs

.PHONY: run compare test lint docs format bench bench-wrk bench-peers profile clean browser peers experiments kernels

## The installed package and its compiled kernels. The kernels are a step of
## their own so that make test can build them while lint and docs, which need
## only the installed package, run beside them (see test).
$(STAMP): $(DEPS) $(KERNELS)
	@touch $(STAMP)

$(DEPS): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,docs]'
	@touch $(DEPS)

## The compiled kernels (simlab/_kernels*.so, by numba's ahead-of-time compiler:
## about a minute), rebuilt when their sources change; simlab runs numba's JIT
## in their place while they are missing or stale (slower to start, same results).
$(KERNELS): $(DEPS) simlab/fast_events.py simlab/fast_kernel.py simlab/levels_kernel.py simlab/order_kernel.py \
		simlab/kernels.py simlab/kernels_build.py
	$(BIN)/python -m simlab.kernels_build
	@touch $(KERNELS)

kernels: $(KERNELS)

## The main job: the dashboard on http://127.0.0.1:8501 (Ctrl-C stops it).
run: $(STAMP) $(KERNELS)
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port 8501 \
		--server.headless true --browser.gatherUsageStats false

## Every model side by side on the built-in C10K scenario, in the terminal.
compare: $(STAMP) $(KERNELS)
	$(BIN)/simlab compare

## Lint, types, the documentation and the whole test suite (the browser test needs
## chromium, the peers' tests their runtimes), in two pytest runs: first every test
## that starts no server and sends no load, two at a time (pytest-xdist; a module's
## tests stay on one worker, which shares its cached simulations); then the real
## ones (servers, load, experiments that measure, the browser) alone and one at a
## time, so that no measurement runs beside CPU-heavy test work. Both runs always
## run; either's failure fails make test. Each prints its 30 slowest tests.
## Before them, the kernels' build (one core, about a minute on a fresh clone)
## runs beside lint and docs (mypy's first run takes about as long), two at a time.
test: $(DEPS) browser peers
	$(MAKE) --no-print-directory -j2 --output-sync=target $(STAMP) lint docs
	rc=0; \
	$(BIN)/pytest -m "not real and not e2e" -n 2 --dist loadfile --durations=30 || rc=$$?; \
	$(BIN)/pytest -m "real or e2e" --durations=30 || rc=$$?; \
	exit $$rc

## Every experiment at full scale (writes data/experiments/<name>/).
experiments: $(STAMP) $(KERNELS)
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
## docs/cli.md's reference part is regenerated from the parser first (committed), and
## docs/claims.md's ledger from data/ (committed).
## NO_MKDOCS_2_WARNING silences a banner Material prints on every build.
docs: $(DEPS)
	$(BIN)/python docs/gen_cli.py
	$(BIN)/python docs/gen_platforms.py
	$(BIN)/python docs/gen_claims.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## The peers' runtimes (nginx, PHP-FPM, uWSGI, Tomcat 10, Go, Node.js, a JDK) and
## wrk: installed with apt-get when missing and running as root; otherwise the
## one line that installs them is printed (and the peers' tests say what is missing).
PEER_PACKAGES := nginx-light php-fpm php-curl uwsgi uwsgi-plugin-python3 libtomcat10-java \
	default-jdk-headless golang-go nodejs wrk erlang-base kotlin libkotlinx-coroutines-java \
	libkotlinx-atomicfu-java
peers:
	@missing=""; \
	for pkg in $(PEER_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "note: the peers need:$$missing; install them with:" \
				"sudo apt-get install$$missing"; \
		fi; \
	fi

lint: $(DEPS)
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy simlab

format: $(DEPS)
	$(BIN)/ruff format $(CHECKED)
	$(BIN)/ruff check --fix $(CHECKED)

## Speed against SimPy and Ciw, and the real async server against uvicorn
## (not tests: each prints ratios measured side by side in one run; needs wrk).
## bench_whole.py times whole processes (startup, plan, scale case) and writes
## its part of docs/benchmarks.md; BENCH_ARGS=--full adds 5M requests.
bench: $(STAMP) $(KERNELS)
	$(BIN)/python benchmarks/bench_whole.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_suite.py
	$(BIN)/python benchmarks/bench_server_vs_uvicorn.py

profile: $(STAMP) $(KERNELS)
	$(BIN)/python benchmarks/profile_hot_path.py

clean:
	rm -rf $(VENV) simlab/_kernels*.so site .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info

## Every peer's trivial-request throughput under wrk beside uvicorn's, as ratios
## (a check that no peer is crippled by its configuration; needs the peers and wrk).
bench-peers: $(STAMP) peers
	$(BIN)/python benchmarks/bench_peers_wrk.py

## simlab's load generator against wrk (needs: apt-get install wrk).
bench-wrk: $(STAMP)
	$(BIN)/python benchmarks/bench_loadgen_vs_wrk.py
