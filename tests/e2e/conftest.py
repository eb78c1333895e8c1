"""End-to-end tests share the session's local environment (two kwok control planes, moto, backend)."""

from rollout_policies.env.pytest_fixtures import local_env, local_env_info

__all__ = ["local_env", "local_env_info"]
