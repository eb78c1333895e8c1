"""Pulumi mocks for the infra tests, set before the program is imported, and a seed-like test plan.

Imported by conftest.py first, so the mocks are in place before any test imports ``infra``.

``deploy(settings, plan)`` runs ``infra.program.build`` under the mocks and returns every resource
the program registered with its inputs, which is what ``pulumi preview`` would send to the provider.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pulumi


class RecordingMocks(pulumi.runtime.Mocks):
    """Echoes inputs back as outputs and records every registration."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


pulumi.runtime.set_mocks(RecordingMocks(), project="markethub-rollout", stack="prod-us-east-1", preview=False)
_PROGRAM_LOOP = asyncio.get_event_loop_policy().get_event_loop()

from infra.program import build  # noqa: E402  (the program is imported after the mocks are set)
from infra.settings import StackSettings, read_settings  # noqa: E402
from rollout_policies.plan.model import (  # noqa: E402
    Audience,
    BackupObjective,
    DisasterRecovery,
    Feature,
    FeatureState,
    Gate,
    GateTable,
    Metric,
    MetricSource,
    Objectives,
    Plan,
    Stage,
    Threshold,
    TrafficStep,
    Trigger,
)


@dataclass(frozen=True)
class Registered:
    type: str
    name: str  # the Pulumi logical name
    inputs: dict[str, Any]

    @property
    def k8s_name(self) -> str:
        return str(self.inputs.get("metadata", {}).get("name", ""))


@dataclass(frozen=True)
class Deployed:
    resources: tuple[Registered, ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r.inputs for r in self.resources if r.type.endswith(f":{kind}")]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [inputs for inputs in self.of_kind(kind) if inputs["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    def by_identity(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Resources keyed as Pulumi keys them (type, logical name): what a preview diffs."""
        return {(r.type, r.name): r.inputs for r in self.resources}


def deploy(settings: StackSettings, plan: Plan) -> Deployed:
    # The program's module-level futures live on the loop that was current when it was imported. A test
    # earlier in the session that ran asyncio.run() in this thread left the thread with no loop (or
    # another one): put the program's loop back, or its futures are "attached to a different loop".
    asyncio.set_event_loop(_PROGRAM_LOOP)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="markethub-rollout", stack=settings.stack, preview=False)

    @pulumi.runtime.test
    def program() -> None:
        build(settings, plan)

    program()
    return Deployed(tuple(Registered(r.typ, r.name, _plain(r.inputs)) for r in mocks.resources))


def _plain(value: Any) -> Any:
    # Mock inputs come back through protobuf: whole numbers arrive as floats. Compare as JSON would.
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def rollout(
    stage: str = "limited",
    step: int = 0,
    green: int = 2,
    *,
    candidate: str = "green",
    stable_version: str = "4.12.0",
) -> dict[str, Any]:
    stable = "blue" if candidate == "green" else "green"
    return {
        "stage": stage,
        "step": step,
        "stable": {"colour": stable, "version": stable_version},
        "candidate": {"colour": candidate, "version": "5.0.0"},
        "weights": {candidate: green, stable: 100 - green},
        "stageStartedAt": "2026-11-20T09:00:00Z",
        "stepStartedAt": "2026-11-20T09:00:00Z",
    }


REPOSITORY = "https://github.com/markethub/markethub-rollout.git"


def settings(
    stack: str = "prod-us-east-1", *, state: dict[str, Any] | None = None, **raw: Any
) -> StackSettings:
    """Settings as Pulumi hands them over: structured values as JSON text."""
    values: dict[str, Any] = {
        "rollout": state if state is not None else rollout(),
        "region": "us-east-1",
        "regionRole": "primary",
        "image": "ghcr.io/markethub/markethub-mobile",
        "controller": {"repository": REPOSITORY},
        **raw,
    }
    encoded = {k: json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v) for k, v in values.items()}
    return read_settings(encoded, stack=stack)


def _metric(
    metric_id: str, provider: str = "prometheus", query: str = "", direction: str = "lower"
) -> Metric:
    return Metric(
        id=metric_id,
        name=metric_id.replace("_", " ").title(),
        unit="%",
        direction=direction,
        source=MetricSource(
            provider=provider,
            query=query or (f"{metric_id}_ratio" if provider == "prometheus" else metric_id),
        ),
    )


def _features(**states: str) -> dict[str, Feature]:
    return {name: Feature(state=FeatureState(state)) for name, state in states.items()}


def make_plan() -> Plan:
    """The seed's shape: a beta cohort at 0%, 2 -> 5 -> 10% at limited, then 30, 50, 100."""
    technical = GateTable(
        name="Technical Metrics",
        gates=(
            Gate(metric="crash_rate", target=Threshold(op="<", value=1), alert=Threshold(op=">", value=2)),
            Gate(
                metric="api_error_rate", target=Threshold(op="<", value=0.1), alert=Threshold(op=">", value=1)
            ),
            Gate(
                metric="search_success", target=Threshold(op=">", value=85), alert=Threshold(op="<", value=75)
            ),
            Gate(metric="daily_active_users", monitor_only=True, note="Growth trend"),
        ),
    )

    def stage(
        stage_id: str, weights: list[float], features: dict[str, Feature], kind: str = "percentage"
    ) -> Stage:
        return Stage(
            id=stage_id,
            name=f"{stage_id.title()} Release",
            audience=Audience(kind=kind),
            steps=tuple(TrafficStep(weight=w, bake=timedelta(days=2)) for w in weights),
            min_duration=timedelta(weeks=2),
            features=features,
            tables=(technical,),
            rollback_objective=timedelta(minutes=30 if stage_id in ("beta", "limited") else 5),
        )

    early = _features(cart_checkout="enabled", social_sharing="limited", offline_mode="limited")
    later = _features(cart_checkout="enabled", social_sharing="enabled", offline_mode="enabled")
    return Plan(
        name="markethub-mobile progressive rollout",
        service="markethub-mobile",
        decision_authority=("devops-lead", "cto"),
        metrics=(
            _metric("crash_rate", "json_http"),
            _metric("api_error_rate", query='100 * sum(rate(http_requests_total{code=~"5.."}[1m]))'),
            _metric("lb_unhealthy_hosts", "cloudwatch"),
            _metric("db_connected", query="min(markethub_db_connection_up)", direction="higher"),
            _metric("search_success", direction="higher"),
            _metric("daily_active_users", "sql"),
            _metric("nps", "manual", direction="higher"),
        ),
        stages=(
            stage("beta", [0], early, kind="cohort"),
            stage("limited", [2, 5, 10], early),
            stage("medium", [30], later),
            stage("majority", [50], later),
            stage("full", [100], later),
        ),
        triggers=(
            Trigger(
                id="crash-rate",
                text="Crash Rate > 5%",
                metric="crash_rate",
                threshold=Threshold(op=">", value=5),
                window=timedelta(minutes=5),
            ),
            Trigger(
                id="api-error-rate",
                text="API Error Rate > 10%",
                metric="api_error_rate",
                threshold=Threshold(op=">", value=10),
                window=timedelta(minutes=2),
            ),
            Trigger(
                id="load-balancer-failures",
                text="Load Balancer Failures",
                metric="lb_unhealthy_hosts",
                threshold=Threshold(op=">", value=0),
                window=timedelta(minutes=1),
            ),
            Trigger(
                id="database-connection-loss",
                text="Database Connection Loss",
                metric="db_connected",
                threshold=Threshold(op="<", value=1),
                window=timedelta(0),
            ),
        ),
        objectives=Objectives(
            backups=(
                BackupObjective(kind="incremental", every=timedelta(hours=1), retention=timedelta(days=7)),
                BackupObjective(kind="full", every=timedelta(days=1), retention=timedelta(days=30)),
            ),
            disaster_recovery=DisasterRecovery(
                regions=("us-east-1", "us-west-2"),
                primary="us-east-1",
                rto=timedelta(minutes=30),
                rpo=timedelta(hours=1),
                drill_every=timedelta(weeks=1),
                verify_tables=("users", "orders"),
            ),
        ),
    )
