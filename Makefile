# RegionMed: `make help` lists the targets. Every target installs what it needs first.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# no telemetry, no hub downloads: the switches regionmed/env.py sets too, from one file
include regionmed/quiet.env
export $(shell sed -n 's/^\([A-Z_]*\)=.*/\1/p' regionmed/quiet.env)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install lock pipeline lint test test-fast test-browser browser-deps bench docs preview clean docker-host container test-container prefect-server flows-serve flows-deploy flows-worker
# pip itself is pinned too: its resolver and the lock's format move with it.
PIP_VERSION := 26.3
# Where torch's CPU wheel comes from. Here pip finds it on disk; with internet and no local wheel,
# `make install TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)
	# torch first: the CPU wheel, so no requirement pulls a multi-GB CUDA build
	$(BIN)/pip install -q $(TORCH_INDEX) "torch==$$(grep -oP '^torch==\K\S+' requirements/lock.txt)"
	# every other package at the exact version of the lock
	$(BIN)/pip install -q -c requirements/lock.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install the locked environment (requirements/lock.txt)

lock: install  ## re-resolve pyproject.toml into requirements/lock.txt and re-pin bentofile.yaml (then commit both)
	$(BIN)/python scripts/lock.py $(if $(UPGRADE),--upgrade,)

pipeline: install  ## run the whole pipeline (dvc repro) on the embedded synthetic default
	$(BIN)/dvc repro

# ruff's rules and line length: [tool.ruff] in pyproject.toml; the same two commands run as
# pre-commit hooks (.pre-commit-config.yaml, docs/development.md)
lint: install  ## ruff check + ruff format --check (make test runs it first)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint  ## lint, then the test suite (what CI runs)
	$(BIN)/pytest

test-fast: install lint  ## lint, then the tests without the slow end-to-end ones
	$(BIN)/pytest -m "not slow"

# Debian's Chromium and its WebDriver for the demo page's browser tests (the tests skip without them).
# Needs root (CI runs as root); DPkg::Lock::Timeout waits for another apt run instead of failing.
browser-deps:  ## install headless Chromium + chromedriver (Debian packages) for the browser tests
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium and chromedriver already installed"; \
	else apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver; fi
	/usr/bin/chromium --version && /usr/bin/chromedriver --version

test-browser: install browser-deps  ## the demo page's tests in headless Chromium (against bentoml serve)
	$(BIN)/pytest -m browser

# Every benchmark whose table BENCHMARKS.md shows, with the arguments that produced it; each writes
# benchmarks/results/<name>.json and `make docs` renders the tables (tests/test_docs_numbers.py checks
# that this list and the results files' commands agree). What it needs: BENCHMARKS.md, top.
BENCH_VITS := '{"vision": {"hidden": 384, "layers": 12, "heads": 6, "mlp": 1536}, "roi": {"fusion_heads": 6}}'
BENCH_RESULTS := benchmarks/results
bench: install  ## rerun every benchmark BENCHMARKS.md reports (about an hour; needs dvc repro first), then make docs
	$(BIN)/python benchmarks/bench_corpus.py
	$(BIN)/python benchmarks/bench_validation.py --repeats 3 --dvc
	$(BIN)/python benchmarks/bench_train.py --steps 6 --rounds 3 --parts
	$(BIN)/python benchmarks/bench_train.py --model $(BENCH_VITS) --bf16-only --no-crop --steps 4 --parts --results $(BENCH_RESULTS)/training_step_vits.json
	$(BIN)/python benchmarks/bench_bootstrap.py
	$(BIN)/python benchmarks/bench_serving.py --seconds 15
	$(BIN)/python benchmarks/bench_serving.py --seconds 15 --concurrency 4 1 --endpoints encode_image --images-per-request 8 --results $(BENCH_RESULTS)/serving_multi_image.json
	$(BIN)/python benchmarks/bench_request_memory.py
	$(BIN)/python benchmarks/bench_demo_page.py --model-dir models/region --not-packaged --screenshot docs/demo-page.png
	$(BIN)/python benchmarks/bench_container.py
	$(BIN)/python benchmarks/bench_drift.py --repeats 2 --log --tsne
	$(BIN)/python benchmarks/bench_mentions.py
	$(BIN)/python benchmarks/bench_annotate.py --self-model .state/annotation_pays_default/A/model --self-shifts 1 2
	$(MAKE) docs

docs: install  ## render every number in README.md, docs/ and BENCHMARKS.md from metrics/ and benchmarks/results/
	$(BIN)/python -m regionmed docs --write

preview: install  ## draw a PNG grid of the corpus with boxes and phrases
	$(BIN)/python -m regionmed corpus preview --out reports/corpus_preview.png

docker-host:  ## (root) install Debian's docker.io + debootstrap and start dockerd when none answers
	scripts/docker_host.sh

# The image of the packaged Bento, run on 127.0.0.1 and stopped (docs/serving.md#container). Offline
# (serving.container.offline: true) it first makes the local base image when missing. The container
# runs with --restart unless-stopped (it says so): Docker brings it back after a crash or a restart of
# the daemon (docs/reliability.md).
container: install  ## build the packaged Bento's Docker image, run it, wait /readyz, check the API key, stop it
	$(BIN)/python -m regionmed container --base

test-container: install  ## the container test (needs a Docker daemon: make docker-host)
	$(BIN)/pytest -m container tests/serving/test_container.py

# The Prefect flows (docs/monitoring.md). Every prefect process started here has the telemetry off
# (DO_NOT_TRACK: the CLI and SDK; PREFECT_SERVER_ANALYTICS_ENABLED: the server, also the temporary one
# a CLI command starts without PREFECT_API_URL) and talks to the same API. Pick ONE of flows-serve and
# flows-deploy: both register retrain/retrain and monitor/monitor, the later one replaces the other's.
PREFECT_PORT ?= 4200
export PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api

prefect-server: install  ## Prefect API + UI on 127.0.0.1:4200 or PREFECT_PORT (holds this shell; the rest in another)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

flows-serve: install  ## one machine: retrain + monitor on their schedules, run in this process (holds the shell)
	$(BIN)/python -m flows.serve

flows-deploy: install  ## work pool instead: create the pool `regionmed`, then prefect deploy --all (prefect.yaml)
	$(BIN)/prefect work-pool create regionmed --type process --overwrite
	$(BIN)/prefect --no-prompt deploy --all

flows-worker: install  ## a process worker of the pool, running the flows in this checkout (REGIONMED_ROOT)
	REGIONMED_ROOT=$(CURDIR) $(BIN)/prefect worker start --pool regionmed

clean:  ## remove pipeline outputs (not the venv)
	rm -rf data models reports/*.png .state dvclive
