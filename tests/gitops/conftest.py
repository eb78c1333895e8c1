"""Fixtures for the gitops tests (the helpers live in gitops_fixtures.py so tests can import them)."""

from gitops_fixtures import forge, openapi_path, plan, receiver, remote

__all__ = ["forge", "openapi_path", "plan", "receiver", "remote"]
