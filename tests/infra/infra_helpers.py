"""The infra tests' helpers: settings as Pulumi hands them over, and a seed-like test plan.

Imported by conftest.py first; it imports ``pulumi_render`` (tests/pulumi_render.py: the program
run under Pulumi mocks, ``deploy``), which sets the mocks before anything imports ``infra``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pulumi_render  # noqa: F401  (first: it sets the Pulumi mocks before anything imports infra)

from infra.settings import StackSettings, as_pulumi_config, read_settings
from rollout_policies.plan.model import (
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
    return read_settings(as_pulumi_config(values), stack=stack)


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
