"""Fixtures for the alerting tests: the shipped plan and a real bare git remote with one stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.pytest_fixtures import local_env, local_env_info
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan
from simulator.harness import GitRemote

__all__ = ["local_env", "local_env_info", "plan", "remote"]


@pytest.fixture(scope="session")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path)
