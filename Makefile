# The front door. Two commands on a fresh machine:
#   make demo   # the whole stack locally: app, Prometheus, Alertmanager, locust traffic (Ctrl-C stops it)
#   make test   # every test: unit, manifests, rules, dashboard, end-to-end
#
# Ports: APP_PORT and METRICS_PORT (default: what manifests/deployment.yaml declares), PROMETHEUS_PORT,
# ALERTMANAGER_PORT, WEBHOOK_PORT, GRAFANA_PORT, LOCUST_PORT (the locust master's UI and /metrics) (defaults:
# declarations/ports.py; make passes on only what you set). Grafana runs when it is installed (`grafana` / `grafana-server` on PATH, or GRAFANA_HOME).
# State: STATE_DIR (.state/).
# CANARY=1 (make up / make demo): run canary/ (stable pods plus a canary pod of another model) instead of manifests/.
# make doctor DIR=canary: check another kustomization; LIVE=1: the cluster kubectl points at.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE_DIR ?= .state
# make doctor: the kustomization to check.
DIR ?= manifests
DEMO_DURATION ?= 3m
export APP_PORT METRICS_PORT PROMETHEUS_PORT ALERTMANAGER_PORT WEBHOOK_PORT GRAFANA_PORT LOCUST_PORT STATE_DIR DEMO_DURATION CANARY
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help deps venv model demo up down status doctor test test-fast bench bench-peers lint dashboard clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# requirements.lock pins what CI tested; pyproject.toml says what the project needs.
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

venv: $(BIN)/.installed ## create .venv with the project and its dev tools

deps: ## install Prometheus and Alertmanager (Debian packages) if they are missing
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v kubectl >/dev/null || { echo "kubectl (1.32+, it carries kustomize) is required: install it from your distribution or kubernetes.io"; exit 1; }; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing — install with: sudo apt-get install$$missing (or put prometheus/alertmanager binaries on PATH)"; exit 1; \
	  fi; \
	fi

model: venv ## train the model into ./model
	$(BIN)/python -m app.train --out model

demo: venv deps ## run the stack (Grafana too when installed), drive locust traffic, print URLs and a summary; Ctrl-C stops everything (DRIFT=1: drifted inputs too; CANARY=1: a canary pod of another model next to stable)
	$(BIN)/python -m offcluster demo $(if $(DRIFT),--drift)

up: venv deps ## start the stack detached (CANARY=1: with the canary overlay's pods)
	$(BIN)/python -m offcluster up

down: ## stop everything `make up` / `make demo` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m offcluster down; else echo "nothing to stop (no $(VENV))"; fi

status: venv ## which of the stack's processes are running, and how many pods KEDA's ScaledObject would ask for
	$(BIN)/python -m offcluster status

doctor: venv ## walk manifests/ (DIR=...) hop by hop: is every ServiceMonitor discovered and scraped? (LIVE=1: the cluster)
	$(BIN)/python -m doctor $(if $(LIVE),--live,$(DIR))

test: venv deps ## every test (the README's test command; CI runs it)
	$(BIN)/python -m pytest -q

test-fast: venv ## unit, manifest, rule and dashboard tests only (no processes started)
	$(BIN)/python -m pytest -q -m "not e2e"

bench: venv ## CPU per request in-process and throughput/latency with and without metrics, at 1 and 256 rows; scrape time
	$(BIN)/python -m benchmarks.inprocess
	$(BIN)/python -m benchmarks.service
	@echo "not run here: worker churn (a few minutes): $(BIN)/python -m benchmarks.churn; next to KServe and MLServer: make bench-peers"

bench-peers: venv ## next to KServe and MLServer on the same model (installed once into PEERS_DIR, default STATE_DIR/peers), load from wrk
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
	  echo "wrk is not installed (apt-get install wrk): a Python keep-alive client drives the load instead"
	PEERS_DIR=$${PEERS_DIR:-$(abspath $(STATE_DIR))/peers} $(BIN)/python -m benchmarks.peers

lint: venv ## ruff, yamllint, hadolint, and the generated dashboard and alert rules are current
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(BIN)/hadolint Dockerfile
	$(BIN)/python -m dashboard --check
	$(BIN)/python -m alerts --check

dashboard: venv ## regenerate manifests/dashboards/*.json from the dashboard package
	$(BIN)/python -m dashboard

clean: down ## stop the stack, then delete its state (STATE_DIR) and the trained model
	rm -rf $(STATE_DIR) model
