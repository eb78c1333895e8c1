"""The local environment's session fixture, shared by every e2e test in this folder."""

from rollout_policies.env.pytest_fixtures import local_env, local_env_info

__all__ = ["local_env", "local_env_info"]
