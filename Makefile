# markethub-rollout: every entry point. `make test` and `make demo` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS_BIN := $(shell bash tools/toolchain.sh bin)
export PATH := $(CURDIR)/$(VENV)/bin:$(TOOLS_BIN):$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
PYTEST_ARGS ?=

.PHONY: help venv tools lint test test-fast demo rehearse env-up env-down env-status bench bench-gates bench-rollback bench-triggers bench-cli bench-webhook clean

help:
	@echo "make test       install everything, lint, run every test"
	@echo "make demo       a short rehearsal on the local two-region environment (one fault, ~5 min)"
	@echo "make rehearse   the whole plan, beta to 100% in both regions, with faults; report.html"
	@echo "make tools      build or fetch the Pulumi CLI, provider, Kubernetes, etcd, kwok (cached)"
	@echo "make env-up     start the local environment (prints kubeconfig paths); make env-down stops it"
	@echo "make lint       ruff, mypy on the decision core, import layering, workflow lint"
	@echo "make bench      every benchmark; make bench-gates the canary statistics benchmark"

$(VENV)/.installed: pyproject.toml rig/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[venv] installing Python packages into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]' -e ./rig
	@touch $@

venv: $(VENV)/.installed

tools:
	@bash tools/toolchain.sh install

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check rollout_policies/core rollout_policies/plan
	$(VENV)/bin/mypy rollout_policies/core rollout_policies/plan rollout_policies/state.py infra
	$(VENV)/bin/lint-imports
	bash .github/lint-workflows.sh

test: venv tools lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only: no Kubernetes control plane, no Pulumi CLI.
test-fast: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# A short rehearsal: the shipped plan, one fault, about five minutes (docs/demo.md).
demo: venv tools
	$(VENV)/bin/rollout env up
	$(PY) -m devenv.demo

# The dress rehearsal: the whole plan, beta to 100% in both regions, with faults (docs/rehearsal.md).
REHEARSE_ARGS ?=
rehearse: venv tools
	$(VENV)/bin/rollout env up
	$(VENV)/bin/rollout rehearse $(REHEARSE_ARGS)

env-up: venv tools
	$(VENV)/bin/rollout env up

env-down: venv
	$(VENV)/bin/rollout env down

env-status: venv
	$(VENV)/bin/rollout env status

bench: bench-gates bench-rollback bench-triggers bench-cli bench-webhook

# `rollout --help` start-up against bare Python (README).
bench-cli: venv
	$(PY) -m bench.cli

# Canary statistics against Flagger-, Kayenta-style and naive gates (docs/statistics.md).
bench-gates: venv
	$(PY) -m bench.gates

# `rollout rollback` until the commit is on the remote's main (docs/gitops.md).
bench-rollback: venv
	$(PY) -m bench.rollback

# Fault injection until stable weights are live, per automatic trigger (docs/alerting.md).
bench-triggers: venv tools
	$(PY) -m bench.rollback_triggers

# 500 slow unauthenticated connections against `rollout serve` while alerts are served (docs/alerting.md).
bench-webhook: venv
	$(PY) -m bench.webhook_load

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
