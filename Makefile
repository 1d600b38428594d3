# shopfeast: one target per stage; `make demo` chains them, `make test` is what CI runs.
# Every target sets itself up: a .venv with the pinned packages, and services where needed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHOPFEAST := $(VENV)/bin/shopfeast
STAMP := $(VENV)/.installed
export SHOPFEAST_DATA_DIR ?= $(CURDIR)/data
RAW_DIR ?= $(SHOPFEAST_DATA_DIR)/raw
DEMO_ARGS ?= --customers 2000 --products 300 --days 365 --seed 7
MONITOR_ARGS ?=
PYTEST_ARGS ?=
SERVICES = eval "$$($(PY) scripts/services.py)"

.PHONY: help install services demo data generate ingest features apply materialize train serve \
        monitor test test-heavy test-fast lint bench bench-generate bench-pipelines bench-declared \
        bench-materialize bench-serving bench-online bench-monitor bench-models bench-retrieval \
        bench-spark bench-stream bench-session stream clean notebooks ui

help:
	@echo "make demo   - generate a demo shop and run the whole job end to end (embedded, nothing to run)"
	@echo "make test   - run the test suite (reaches or starts Redis and PostgreSQL)"
	@echo "stages: data features apply materialize train serve monitor; benchmarks: bench-*; lint"
	@echo "make notebooks - JupyterLab on notebooks/ (after make demo); make ui - Feast's UI"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev,spark]"
	@touch $@

install: $(STAMP)

NOTEBOOKS_STAMP := $(VENV)/.notebooks
$(NOTEBOOKS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev,notebooks]"
	@touch $@

notebooks: $(NOTEBOOKS_STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

ui: $(STAMP)
	$(SHOPFEAST) ui

services: $(STAMP)
	@$(PY) scripts/services.py

demo: $(STAMP)
	$(SHOPFEAST) demo $(DEMO_ARGS)

generate: $(STAMP)
	$(SHOPFEAST) generate --out $(RAW_DIR) $(DEMO_ARGS)

ingest: $(STAMP)
	$(SHOPFEAST) ingest $(RAW_DIR)

data: generate ingest

features: $(STAMP)
	$(SHOPFEAST) features

apply: $(STAMP)
	@$(SERVICES) && $(SHOPFEAST) apply --profile redis

materialize: $(STAMP)
	@$(SERVICES) && $(SHOPFEAST) materialize --profile redis

train: $(STAMP)
	$(SHOPFEAST) train churn && $(SHOPFEAST) train ranking

monitor: $(STAMP)
	$(SHOPFEAST) monitor $(MONITOR_ARGS)

serve: $(STAMP)
	@$(SERVICES) && $(SHOPFEAST) serve

# `make test` leaves out the tests marked `heavy` (a whole run end to end, a minute or more each);
# `make test-heavy` runs them, and .ci/run runs both. Both run on TEST_WORKERS pytest-xdist
# workers (default 2; TEST_WORKERS= runs them in one process); a store the tests share is built
# once, in the worker that runs them all (tests/conftest.py). Two workers: `make test` in 4m54s
# and 5m02s against 7m16s in one process (2026-12-04, quiet 2-core machine, both green).
TEST_WORKERS ?= 2
XDIST = $(if $(TEST_WORKERS),-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)
test: $(STAMP)
	@$(SERVICES) && $(PY) -m pytest -m "not heavy" $(XDIST) $(PYTEST_ARGS)

test-heavy: $(STAMP)
	@$(SERVICES) && $(PY) -m pytest -m heavy $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

bench: bench-generate bench-pipelines bench-materialize bench-serving bench-monitor bench-retrieval \
       bench-stream

bench-generate: $(STAMP)
	$(PY) -m scripts.bench_generate

bench-pipelines: $(STAMP)
	$(PY) -m scripts.bench_pipelines

bench-declared: $(STAMP)
	$(PY) -m scripts.bench_declared

bench-materialize: $(STAMP)
	@$(SERVICES) && $(PY) -m scripts.bench_materialize

bench-monitor: $(STAMP)
	@$(SERVICES) && $(PY) -m scripts.bench_monitor

bench-models: $(STAMP)
	$(PY) -m scripts.bench_models

bench-retrieval: $(STAMP)
	$(PY) -m scripts.bench_retrieval --build

# The 100k bench shop on both engines, then a 1M-customer shop (ten copies of its customers);
# an engine past 20 GiB is stopped and reported as failed (about 3 h in all on 2 cores)
bench-spark: $(STAMP)
	$(PY) -m scripts.bench_spark
	$(PY) -m scripts.bench_spark --data-dir data/bench1m --scale-from data/bench --copies 10 \
		--engines spark,local --max-rss-gib 20

bench-online: $(STAMP)
	@$(SERVICES) && $(PY) -m scripts.bench_online

bench-serving: $(STAMP)
	@$(SERVICES) && $(PY) -m scripts.bench_serving

# Its own redis-server (needs the redis-server binary) and one `shopfeast stream` worker.
bench-stream: $(STAMP)
	$(PY) -m scripts.bench_stream $(BENCH_STREAM_ARGS)

# NDCG@10 and candidate recall with and without the live session's candidates (embedded store).
bench-session: $(STAMP)
	$(PY) -m scripts.bench_session_recs $(BENCH_SESSION_ARGS)

stream: $(STAMP)
	@$(SERVICES) && $(SHOPFEAST) stream

clean:
	rm -rf $(SHOPFEAST_DATA_DIR) .pytest_cache .ruff_cache
