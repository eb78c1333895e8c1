"""End to end through the real alerting path: simulator -> Prometheus (Debian) with the plan's trigger rules
-> Alertmanager (Debian) -> ``rollout serve`` (its own process) -> rollback commit on a bare remote.

Trigger windows are compressed 60x (crash 5s, API errors 2s, load balancer 1s, database immediately):
the real windows take minutes, and are measured by ``bench/rollback_triggers.py``. The HTTPRoute
on an API server is not checked here: serve runs with ``--no-apply`` (no Pulumi stack in this lane).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour
from simulator.harness import FAULTS, STACK, AlertingLane, compressed, compressed_budget

pytestmark = pytest.mark.services


@pytest.mark.parametrize("trigger", list(FAULTS))
def test_each_fault_in_green_lands_one_rollback_commit_through_alertmanager(
    plan: Plan, tmp_path: Path, trigger: str
) -> None:
    fast = compressed(plan, 60)
    text = next(t.text for t in plan.triggers if t.id == trigger)
    with AlertingLane(tmp_path, fast, seed=11, detection_budget=compressed_budget(60)) as lane:
        lane.wait_for_traffic()
        time.sleep(2)
        assert lane.remote.commits_since_seed() == []
        lane.simulation.inject("green", **FAULTS[trigger])
        commit = lane.wait_for_rollback(timeout=90)
        assert commit is not None, (
            f"no rollback; firing: {lane.firing()}; log: {lane.serve.log_path.read_text()}"
        )
        time.sleep(3)  # Alertmanager repeats and resolved notifications must not add commits
        assert lane.remote.commits_since_seed() == [commit]
        message = lane.remote.messages()[0]
        assert f"Why: automatic rollback: {text}" in message
        state = state_from_text(lane.remote.show(f"Pulumi.{STACK}.yaml"), STACK)
        assert state.weights == {Colour.BLUE: 100, Colour.GREEN: 0}
        metrics = lane.serve.metrics()
        assert 'rollout_rollbacks_total{result="rolled-back"} 1.0' in metrics


def test_alertmanager_without_the_token_is_refused_and_nothing_rolls_back(plan: Plan, tmp_path: Path) -> None:
    with AlertingLane(tmp_path, compressed(plan, 60), seed=12) as lane:
        lane.token_file.write_text(
            "not-the-token-at-all"
        )  # Alertmanager re-reads credentials_file per request
        lane.wait_for_traffic()
        lane.simulation.inject("green", db_down=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and 'reason="unauthorized"} 0.0' in lane.serve.metrics():
            time.sleep(0.5)
        assert (
            'rollout_webhook_notifications_rejected_total{reason="unauthorized"} 0.0'
            not in lane.serve.metrics()
        )
        assert lane.remote.commits_since_seed() == []
        assert "missing or wrong bearer token" in lane.serve.log_path.read_text()
        assert "not-the-token-at-all" not in lane.serve.log_path.read_text()
        assert httpx.get(f"{lane.serve.url}/healthz", timeout=5).status_code == 200
