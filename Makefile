# pushpipe: run `make help` for the targets.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup up down status demo test test-cluster lint lock unit ci bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@command -v javac >/dev/null || (apt-get update && apt-get install -y openjdk-17-jdk-headless)
	@command -v mvn >/dev/null || (apt-get update && apt-get install -y maven)
	@command -v promtool >/dev/null || (apt-get update && apt-get install -y prometheus prometheus-alertmanager prometheus-pushgateway)
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)  # the console's browser tests
	@command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)  # bench/ingress.py --load wrk
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'  # every package at the version CI tested
	touch $(STAMP)

setup: $(STAMP) ## create .venv with pushpipe and its pinned dependencies

up: setup ## install and start Kafka, Elasticsearch, ClickHouse, the simulators and the three Flink jobs
	$(BIN)/pushpipe up

down: setup ## stop everything
	$(BIN)/pushpipe down

status: setup ## components' health, each stage's figures from Prometheus, firing alerts
	$(BIN)/pushpipe status

demo: setup ## README command 1: the whole pipeline on embedded defaults, with real pushes and analytics
	$(BIN)/pushpipe demo

test: setup lint ## README command 2 (what CI runs): lint, unit tests, then the end-to-end tests through the real stack
	$(BIN)/python -m pytest -v --durations=15 -m "not cluster_upgrade"

test-cluster: setup ## the cluster's upgrades and faults (tests/test_cluster_upgrade.py: ~20 min on 2 cores, not in CI yet)
	$(BIN)/python -m pytest -v -s -m cluster_upgrade

lock: setup ## write constraints.txt: the versions now installed, for every later install
	$(BIN)/pip freeze --exclude-editable | grep -v '^pushpipe' > constraints.txt

lint: setup ## ruff (lint and import order) and mypy (strict on schemas, connectors, jobs, simulators), configured in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

unit: setup ## only the tests that need no services (none is started, none is touched)
	$(BIN)/python -m pytest -v -m "not stack and not simulator"

ci: test ## exactly what CI runs

bench: setup ## bench/e2e.py: throughput and latency through the real stack
	$(BIN)/python -m bench.e2e

clean: down ## stop everything and remove .venv (downloads stay in ~/.pushpipe/cache)
	rm -rf $(VENV)
