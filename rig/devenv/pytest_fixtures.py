"""pytest fixtures for end-to-end tests: one local environment per test session, always torn down.

Use it from a conftest.py with ``pytest_plugins = ["devenv.pytest_fixtures"]`` (top
level) or by importing the fixtures (``from devenv.pytest_fixtures import local_env``).
Set MARKETHUB_ENV_STATE_DIR to keep the environment's state (logs, Pulumi backend) after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.local import EnvInfo, LocalEnvironment


class _Shared:
    """The one environment of this test session, however many conftest files expose the fixture."""

    environment: LocalEnvironment | None = None
    users = 0


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEnvironment]:
    """The two-region environment (us-east-1, us-west-2), started once and stopped at session end.

    Shutdown runs even when a test fails or the session is interrupted; it raises if any process
    the environment started is still alive, so a leak fails the run instead of going unnoticed.
    If several conftest files import this fixture, they share one environment (counted users).
    """
    if _Shared.environment is None:
        explicit = os.environ.get("MARKETHUB_ENV_STATE_DIR")
        state_dir = Path(explicit) if explicit else tmp_path_factory.mktemp("local-env")
        # With the database (WAL archived to pgBackRest on moto): the drills and the rehearsal use it.
        environment = LocalEnvironment(state_dir, database=True)
        try:
            environment.up()
        except BaseException:
            environment.down(strict=False)
            raise
        _Shared.environment = environment
    _Shared.users += 1
    shared = _Shared.environment
    try:
        yield shared
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.environment = None
            shared.down()


@pytest.fixture(scope="session")
def local_env_info(local_env: LocalEnvironment) -> EnvInfo:
    """What env.json says about the session's environment (kubeconfigs, ports, backend, moto URL)."""
    return local_env.info
