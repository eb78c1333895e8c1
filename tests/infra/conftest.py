"""Fixtures for the Pulumi program tests. ``infra_helpers`` sets the Pulumi mocks on import."""

from __future__ import annotations

import pytest
from infra_helpers import make_plan

from rollout_policies.plan.model import Plan


@pytest.fixture(scope="session")
def plan() -> Plan:
    return make_plan()
