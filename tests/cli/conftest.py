"""Fixtures for the CLI tests (the helpers live in cli_fixtures.py so tests can import them)."""

from cli_fixtures import repo

__all__ = ["repo"]
