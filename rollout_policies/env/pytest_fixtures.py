"""pytest fixtures for end-to-end tests: one local environment per test session, always torn down.

Use it from a conftest.py with ``pytest_plugins = ["rollout_policies.env.pytest_fixtures"]`` (top
level) or by importing the fixtures (``from rollout_policies.env.pytest_fixtures import local_env``).
Set MARKETHUB_ENV_STATE_DIR to keep the environment's state (logs, Pulumi backend) after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout_policies.env.local import EnvInfo, LocalEnvironment


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEnvironment]:
    """The two-region environment (us-east-1, us-west-2), started once and stopped at session end.

    Shutdown runs even when a test fails or the session is interrupted; it raises if any process
    the environment started is still alive, so a leak fails the run instead of going unnoticed.
    """
    explicit = os.environ.get("MARKETHUB_ENV_STATE_DIR")
    state_dir = Path(explicit) if explicit else tmp_path_factory.mktemp("local-env")
    environment = LocalEnvironment(state_dir)
    try:
        environment.up()
        yield environment
    finally:
        environment.down()


@pytest.fixture(scope="session")
def local_env_info(local_env: LocalEnvironment) -> EnvInfo:
    """What env.json says about the session's environment (kubeconfigs, ports, backend, moto URL)."""
    return local_env.info
