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

.PHONY: help venv lock check-install tools lint test test-fast test-rehearsal demo rehearse env-up env-down env-status bench bench-gates bench-replay bench-rollback bench-triggers bench-cli bench-webhook clean

help:
	@echo "make test       install everything, lint, run every test"
	@echo "make demo       bring up the local two-region environment and run a rollout on it"
	@echo "make rehearse   the whole plan, beta to 100% in both regions, with faults (not passing yet); report.html"
	@echo "make tools      build or fetch the Pulumi CLI, provider, Kubernetes, etcd, kwok (cached)"
	@echo "make env-up     start the local environment (prints kubeconfig paths); make env-down stops it"
	@echo "make lint       ruff, mypy on the decision core, import layering, workflow lint"
	@echo "make check-install  the product alone in a clean venv (runtime lock): imports and rollout --help"
	@echo "make lock       re-pin requirements.lock and requirements-runtime.lock (hashes)"
	@echo "make bench      every benchmark; make bench-gates the canary statistics benchmark"

# Exact versions with hashes from the lock; then the product and the rig themselves, editable.
$(VENV)/.installed: pyproject.toml rig/pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[venv] installing Python packages into $(VENV) from requirements.lock"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q --require-hashes -r requirements.lock
	@$(PY) -m pip install -q --no-deps -e . -e ./rig
	@touch $@

venv: $(VENV)/.installed

# Re-pin requirements.lock (product + dev extra + rig) and requirements-runtime.lock (the product
# alone, the same versions) from the ranges in pyproject.toml and rig/pyproject.toml. Pins already
# in the lock stay where the ranges allow; LOCK_ARGS=--upgrade moves all to the newest in range.
LOCK_ARGS ?=
lock: venv
	$(VENV)/bin/uv pip compile requirements.in --generate-hashes --python-version 3.11 --quiet $(LOCK_ARGS) \
		--no-emit-package markethub-rollout --no-emit-package markethub-rollout-devenv -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --quiet \
		-c requirements.lock -o requirements-runtime.lock

# A clean venv with the runtime lock and `pip install .` only: every product module imports (CI).
check-install:
	bash tools/check-install.sh

tools:
	@bash tools/toolchain.sh install

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check rollout_policies/core rollout_policies/plan
	$(VENV)/bin/mypy rollout_policies/core rollout_policies/plan rollout_policies/state.py rollout_policies/stack_file.py \
		rollout_policies/providers infra
	$(VENV)/bin/mypy tests/test_public_api.py
	$(VENV)/bin/lint-imports
	bash .github/lint-workflows.sh

# Every test but the dress rehearsal's and the demo's (marked `rehearsal`, about 30 minutes together;
# the default rehearsal does not pass yet: docs/rehearsal.md). `make test-rehearsal` runs those.
test: venv tools lint
	$(PY) -m pytest -m "not rehearsal" $(PYTEST_ARGS)

test-rehearsal: venv tools
	$(PY) -m pytest -m rehearsal $(PYTEST_ARGS)

# Unit tests only: no Kubernetes control plane, no Pulumi CLI.
test-fast: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# The demo (docs/demo.md); it becomes a short rehearsal once `make rehearse` passes (issue 14).
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

bench: bench-gates bench-replay bench-rollback bench-triggers bench-cli bench-webhook

# `rollout --help` start-up against bare Python (README).
bench-cli: venv
	$(PY) -m bench.cli

# Canary statistics against Flagger-, Kayenta-style and naive gates (docs/statistics.md).
bench-gates: venv
	$(PY) -m bench.gates

# A comparison gate judging a whole 14-day stage of 1-minute intervals (docs/statistics.md).
bench-replay: venv
	$(PY) -m bench.replay

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
