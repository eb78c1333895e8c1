"""Small plans built in code for the decision-core tests: two stages, a handful of gates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rollout_policies.core import Measurement
from rollout_policies.plan.model import (
    Audience,
    BackupObjective,
    Criterion,
    CriterionKind,
    Direction,
    DisasterRecovery,
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

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # every test's stage start


def at(**offset: float) -> datetime:
    """A moment relative to T0, e.g. ``at(hours=49)``."""
    return T0 + timedelta(**offset)


def metric(metric_id: str, unit: str = "%", *, max_age: str = "15m", evaluable_after: str = "0s") -> Metric:
    return Metric(
        id=metric_id,
        name=metric_id.replace("_", " ").title(),
        unit=unit,
        direction=Direction.LOWER_IS_BETTER,
        source=MetricSource(provider="prometheus", query=metric_id, max_age=max_age),  # type: ignore[arg-type]
        evaluable_after=evaluable_after,  # type: ignore[arg-type]
    )


def gate(metric_id: str, target: str | None, alert: str | None, **extra: Any) -> Gate:
    return Gate(
        metric=metric_id,
        target=Threshold.model_validate(target) if target else None,
        alert=Threshold.model_validate(alert) if alert else None,
        **extra,
    )


METRICS = (
    metric("crash_rate"),
    metric("app_load_time", "s"),
    metric("retention_7d", evaluable_after="7d"),
    metric("daily_active_users", "users"),
    metric("critical_issues", "issues", max_age="1h"),
    metric("critical_bugs", "bugs", max_age="1d"),
    metric("api_error_rate", max_age="5m"),
)

TECHNICAL = GateTable(
    name="Technical Metrics",
    gates=(gate("crash_rate", "< 1", "> 2"), gate("app_load_time", "< 3", "> 5")),
)
BUSINESS = GateTable(
    name="Business Metrics",
    gates=(gate("daily_active_users", None, None, monitor_only=True, note="Growth trend"),),
)

GO_TECHNICAL = Criterion(
    id="technical-in-target",
    text="All technical metrics within target range",
    kind=CriterionKind.METRICS,
    tables=("Technical Metrics",),
)
GO_BUGS = Criterion(
    id="few-critical-bugs",
    text="<5 critical bugs reported",
    kind=CriterionKind.COUNT,
    metric="critical_bugs",
    threshold=Threshold.model_validate("< 5"),
)
GO_CLEAN_48H = Criterion(
    id="no-critical-issues-48h",
    text="No critical issues for 48 hours",
    kind=CriterionKind.WINDOW,
    metric="critical_issues",
    threshold=Threshold.model_validate("== 0"),
    window="48h",  # type: ignore[arg-type]
)
GO_FEEDBACK = Criterion(
    id="positive-feedback",
    text="Positive feedback on core features",
    kind=CriterionKind.MANUAL,
    owners=("devops-lead", "cto"),
)
NO_GO_CRASH = Criterion(
    id="crash-rate-over-2",
    text="Crash rate >2%",
    kind=CriterionKind.COUNT,
    metric="crash_rate",
    threshold=Threshold.model_validate("> 2"),
)
NO_GO_SENTIMENT = Criterion(
    id="negative-sentiment",
    text="Negative sentiment trend",
    kind=CriterionKind.MANUAL,
    owners=("cto",),
)

BETA = Stage(
    id="beta",
    name="Beta Testing",
    audience=Audience(kind="cohort", size=50),
    steps=(TrafficStep(weight=2, bake="1d"),),  # type: ignore[arg-type]
    min_duration="7d",  # type: ignore[arg-type]
    tables=(TECHNICAL, BUSINESS),
    go=(GO_TECHNICAL, GO_BUGS, GO_FEEDBACK),
    no_go=(NO_GO_CRASH, NO_GO_SENTIMENT),
    rollback_objective="30m",  # type: ignore[arg-type]
)
LIMITED = Stage(
    id="limited",
    name="Limited Release",
    audience=Audience(kind="percentage"),
    steps=(
        TrafficStep(weight=2, bake="1d"),  # type: ignore[arg-type]
        TrafficStep(weight=5, bake="1d"),  # type: ignore[arg-type]
        TrafficStep(weight=10, bake="2d"),  # type: ignore[arg-type]
    ),
    min_duration="4d",  # type: ignore[arg-type]
    tables=(TECHNICAL,),
    go=(GO_CLEAN_48H,),
    rollback_objective="30m",  # type: ignore[arg-type]
)
MEDIUM = Stage(
    id="medium",
    name="Medium Release",
    audience=Audience(kind="percentage"),
    steps=(TrafficStep(weight=30, bake="1d"),),  # type: ignore[arg-type]
    min_duration="7d",  # type: ignore[arg-type]
    tables=(GateTable(name="Cohort Analysis", gates=(gate("retention_7d", "> 60", "< 50"),)),),
    rollback_objective="5m",  # type: ignore[arg-type]
)

CRASH_TRIGGER = Trigger(
    id="crash-rate",
    text="Crash Rate > 5%: auto-rollback in 5 minutes",
    metric="crash_rate",
    threshold=Threshold.model_validate("> 5"),
    window="5m",  # type: ignore[arg-type]
)
API_TRIGGER = Trigger(
    id="api-error-rate",
    text="API Error Rate > 10%: auto-rollback in 2 minutes",
    metric="api_error_rate",
    threshold=Threshold.model_validate("> 10"),
    window="2m",  # type: ignore[arg-type]
)


def plan(*stages: Stage, triggers: tuple[Trigger, ...] = ()) -> Plan:
    return Plan(
        name="test-plan",
        service="shop",
        decision_authority=("devops-lead", "cto"),
        metrics=METRICS,
        stages=stages or (BETA, LIMITED, MEDIUM),
        triggers=triggers,
        objectives=Objectives(
            backups=(BackupObjective(kind="full", every="1d", retention="7d"),),  # type: ignore[arg-type]
            disaster_recovery=DisasterRecovery(
                regions=("eu-west-1", "eu-central-1"),
                primary="eu-west-1",
                rto="15m",  # type: ignore[arg-type]
                rpo="1h",  # type: ignore[arg-type]
                drill_every="30d",  # type: ignore[arg-type]
            ),
        ),
    )


PLAN = plan()
PLAN_WITH_TRIGGERS = plan(triggers=(CRASH_TRIGGER, API_TRIGGER))


def ok(metric_id: str, value: float, when: datetime) -> Measurement:
    return Measurement.ok(metric_id, value, when)
