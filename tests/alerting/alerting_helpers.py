"""Helpers for the alerting tests: Alertmanager version-4 payloads and a receiver over a real bare remote."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rollout_policies.alerting import Deduplicator, GitRollback, WebhookReceiver
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo, RetryPolicy
from rollout_policies.gitops.stack_config import read_state
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour
from simulator.harness import STACK

TOKEN = "test-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
GO_ZERO = "0001-01-01T00:00:00Z"


def alert(
    trigger: str = "database-connection-loss",
    *,
    stack: str = STACK,
    status: str = "firing",
    starts_at: datetime,
    ends_at: datetime | None = None,
    fingerprint: str = "a1b2c3d4e5f60718",
    action: str = "rollback",
    service: str = "markethub-mobile",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "Rollback" + "".join(p.capitalize() for p in trigger.split("-")),
            "rollout_action": action,
            "rollout_trigger": trigger,
            "rollout_stack": stack,
            "rollout_service": service,
            "rollout_region": "us-east-1",
            "severity": "critical",
        },
        "annotations": {"summary": trigger},
        "startsAt": starts_at.isoformat(),
        "endsAt": ends_at.isoformat() if ends_at else GO_ZERO,
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def notification(
    *alerts: dict[str, Any], status: str = "firing", group_key: str = '{}:{alertname="x"}'
) -> bytes:
    """A notification as Alertmanager 0.25 sends it (the webhook's documented version-4 JSON)."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "rollout-webhook",
            "groupLabels": {"alertname": "x"},
            "commonLabels": alerts[0]["labels"] if alerts else {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example",
            "alerts": list(alerts),
        }
    ).encode()


class WorkingTreeApplier:
    """Records each apply with the weights in the clone's working tree at that moment (what
    ``pulumi up`` would read), standing in for the Pulumi applier, which needs a cluster."""

    def __init__(self, clone: Path) -> None:
        self.clone = clone
        self.applied: list[tuple[str, dict[Colour, int]]] = []

    def apply_traffic(self, stack: str) -> None:
        self.applied.append((stack, dict(read_state(self.clone / f"Pulumi.{stack}.yaml").weights)))


def make_receiver(
    clone: Path, plan: Plan, now: datetime, applier: WorkingTreeApplier | None = None
) -> WebhookReceiver:
    repo = GitRepo(clone, retry=RetryPolicy(attempts=3, seconds=10, first_wait=0.05))
    ops = GitOps(repo=repo, plan=plan, actor="rollout-serve@test")
    return WebhookReceiver(
        plan,
        GitRollback(ops, applier),
        TOKEN,
        allowed_stacks=frozenset({STACK}),
        clock=lambda: now,
        skew=timedelta(seconds=30),
        dedup=Deduplicator(ttl=3600),
    )


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
