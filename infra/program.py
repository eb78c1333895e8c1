"""The Pulumi program: a stack's config plus the plan, turned into every component.

``main()`` is the entry point for both ways of running it: ``infra/__main__.py`` calls it under
``pulumi up`` (Pulumi.yaml ``main: infra/``), and the Automation API runs it as an inline program.
``build()`` does the work from already-validated values, so tests drive it with Pulumi mocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from infra import kube, naming
from infra.alerts import AlertsArgs, RollbackAlerts, bridged_metric_ids
from infra.autoscaling import Autoscaling, AutoscalingArgs
from infra.backups import BackupArgs, BackupSchedule, pgbackrest_env
from infra.bluegreen import BlueGreenArgs, BlueGreenService
from infra.controller import ControllerArgs, RolloutController
from infra.drills import DrillArgs, DrillSchedule
from infra.failover import FailoverArgs, RegionalFailover
from infra.flags import FeatureFlags, FlagsArgs, config_map_name, sticky_for
from infra.settings import KEYS, NAMESPACE, Alerts, StackSettings, drill_options, read_settings
from infra.traffic import TrafficSplit, TrafficSplitArgs
from rollout_policies.errors import UserError
from rollout_policies.plan.loader import load_plan
from rollout_policies.plan.model import Plan, Stage, UnknownStage
from rollout_policies.state import Colour

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RolloutInfra:
    """The components of one stack, for tests and for programs that build on top of them."""

    service: BlueGreenService
    traffic: TrafficSplit
    autoscaling: Autoscaling
    flags: FeatureFlags
    failover: RegionalFailover
    alerts: RollbackAlerts
    controller: RolloutController | None
    backups: BackupSchedule | None
    drills: DrillSchedule


def main(project_dir: Path | None = None) -> RolloutInfra:
    """Read the current stack's config and the plan it names, and declare everything.

    ``project_dir`` is where Pulumi.yaml is: an inline program (the Automation API) runs in its
    host's working directory, not the project's, so the applier says where the plan is relative to.
    """
    stack = pulumi.get_stack()
    settings = read_settings(stack_config(), stack=stack)
    plan = load_plan_file(resolve_plan_path(settings.plan, project_dir))
    return build(settings, plan)


def stack_config() -> dict[str, Any]:
    """This stack's ``markethub-rollout:*`` values, keys without the prefix."""
    config = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    for key in KEYS:
        value = config.get(key)
        if value is not None:
            raw[key] = value
    # Keys nobody reads are typos: pass them on so read_settings names them.
    prefix = f"{NAMESPACE}:"
    every = {**pulumi.runtime.config.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    for full_key, value in every.items():
        if full_key.startswith(prefix) and full_key[len(prefix) :] not in raw:
            raw[full_key[len(prefix) :]] = value
    return raw


def route_urn(stack: str, service: str = "markethub-mobile", project: str = "markethub-rollout") -> str:
    """The URN of the traffic route, for ``pulumi up --target`` of a rollback (traffic only)."""
    route_type = "markethub:infra:TrafficSplit$kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
    return f"urn:pulumi:{stack}::{project}::{route_type}::{service}-traffic-httproute"


def resolve_plan_path(path: str, project_dir: Path | None = None) -> Path:
    """A relative plan path is taken from the Pulumi project (when known), then the working
    directory, then this package's own root (the shipped plan)."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    if project_dir is not None and (project_dir / candidate).exists():
        return project_dir / candidate
    if candidate.exists():
        return candidate
    return PROJECT_ROOT / candidate


def load_plan_file(path: Path) -> Plan:
    """The plan, through the plan loader (whose errors name the file, line and field)."""
    return load_plan(path)


def current_stage(settings: StackSettings, plan: Plan) -> Stage:
    try:
        return plan.stage(settings.rollout.stage)
    except UnknownStage as err:
        raise UserError(f"Pulumi.{settings.stack}.yaml: {NAMESPACE}:rollout.stage: {err}") from None


@dataclass(frozen=True)
class Scope:
    """What every part of a stack is declared from: validated settings, the plan, the current stage."""

    settings: StackSettings
    plan: Plan
    stage: Stage
    service: str
    depends: tuple[pulumi.Resource, ...]  # the Namespace, when the program declares it

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def options(self, *after: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(depends_on=[*self.depends, *after])


def build(settings: StackSettings, plan: Plan) -> RolloutInfra:
    """Declare every component for one stack (one region) from validated settings and the plan."""
    stage = current_stage(settings, plan)
    check_step(settings, stage)
    service = settings.service_name or plan.service
    scope = Scope(settings, plan, stage, service, namespace(settings, service))
    flags, blue_green, traffic, autoscaling = serving(scope)
    failover = regional_failover(scope)
    alerts, controller = automatic_rollback(scope)
    backups, drills = recovery(scope)
    export_outputs(scope)
    return RolloutInfra(
        service=blue_green,
        traffic=traffic,
        autoscaling=autoscaling,
        flags=flags,
        failover=failover,
        alerts=alerts,
        controller=controller,
        backups=backups,
        drills=drills,
    )


def check_step(settings: StackSettings, stage: Stage) -> None:
    if settings.rollout.step >= len(stage.steps):
        raise UserError(
            f"Pulumi.{settings.stack}.yaml: {NAMESPACE}:rollout.step: stage {stage.id} has "
            f"{len(stage.steps)} step(s), so step {settings.rollout.step} does not exist"
        )


def namespace(settings: StackSettings, service: str) -> tuple[pulumi.Resource, ...]:
    """The service's Namespace, when this stack declares it (``createNamespace``)."""
    if not settings.create_namespace:
        return ()
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": naming.base_labels(service, "namespace")},
    }
    return (kube.apply(f"{service}-namespace", manifest, pulumi.ResourceOptions()),)


def serving(scope: Scope) -> tuple[FeatureFlags, BlueGreenService, TrafficSplit, Autoscaling]:
    """The service itself: its flags, both colours, the route between them, their autoscaling."""
    settings, service, ns = scope.settings, scope.service, scope.namespace
    state = settings.rollout
    flags = FeatureFlags(
        f"{service}-flags",
        FlagsArgs(
            service=service,
            namespace=ns,
            stage=scope.stage,
            stable_features=scope.plan.stable_feature_set() if state.rolled_back else None,
            sticky=sticky_for(
                scope.plan,
                scope.stage,
                state.candidate_weight,
                rolled_back=state.rolled_back,
                cohort=settings.cohort_value,
            ),
        ),
        scope.options(),
    )
    blue_green = BlueGreenService(
        service,
        BlueGreenArgs(
            service=service,
            namespace=ns,
            image=settings.image,
            stable=state.stable,
            candidate=state.candidate,
            port=settings.port,
            probes=settings.probes,
            resources=settings.resources,
            disruption_max_unavailable=settings.disruption_max_unavailable,
            flags_config_map=config_map_name(service),
            extra_labels={naming.ENVIRONMENT: settings.environment.value, naming.REGION: settings.region},
        ),
        scope.options(flags),
    )
    traffic = TrafficSplit(
        f"{service}-traffic",
        TrafficSplitArgs(
            service=service,
            namespace=ns,
            port=settings.port,
            state=state,
            plan_path=settings.plan,
            cohort_header=settings.cohort_header,
            cohort_value=settings.cohort_value,
            router=settings.router,
            hostnames=settings.hostnames,
            gateway=settings.gateway,
        ),
        scope.options(),
    )
    autoscaling = Autoscaling(
        f"{service}-autoscaling",
        AutoscalingArgs(
            service=service,
            namespace=ns,
            state=state,
            stage=scope.stage,
            min_replicas=settings.min_replicas,
            max_replicas=settings.max_replicas,
            headroom=settings.headroom,
            cpu_utilization=settings.cpu_utilization,
            custom_metric=settings.custom_metric,
        ),
        scope.options(blue_green),
    )
    return flags, blue_green, traffic, autoscaling


def regional_failover(scope: Scope) -> RegionalFailover:
    settings = scope.settings
    return RegionalFailover(
        f"{scope.service}-failover",
        FailoverArgs(
            service=scope.service,
            namespace=scope.namespace,
            region=settings.region,
            role=settings.region_role,
            port=settings.port,
            failover=settings.failover,
        ),
        scope.options(),
    )


def automatic_rollback(scope: Scope) -> tuple[RollbackAlerts, RolloutController | None]:
    """The alert rules and their route, and the controller the route calls (``rollout serve``)."""
    settings = scope.settings
    controller_settings = settings.controller
    alerts = RollbackAlerts(
        f"{scope.service}-alerts",
        AlertsArgs(
            service=scope.service,
            namespace=scope.namespace,
            plan=scope.plan,
            stage=scope.stage,
            stack=settings.stack,
            region=settings.region,
            alerts=settings.alerts,
            webhook_secret=controller_settings.webhook_secret,
            notify_secret=controller_settings.notify_secret,
        ),
        scope.options(),
    )
    if not controller_settings.enabled:
        return alerts, None
    controller = RolloutController(
        f"{scope.service}-controller", controller_args(settings, scope.plan, scope.service), scope.options()
    )
    return alerts, controller


def controller_args(settings: StackSettings, plan: Plan, service: str) -> ControllerArgs:
    """The RolloutController of one stack: what its collector measures comes from the plan's rules."""
    exported = Alerts().bridge_metric  # `rollout serve` exports this gauge (alerting/collector.py)
    if settings.alerts.bridge_metric != exported:
        raise UserError(
            f"Pulumi.{settings.stack}.yaml: {NAMESPACE}:alerts.bridgeMetric: the controller exports "
            f"{exported}, so rules reading {settings.alerts.bridge_metric} would never fire "
            "(leave bridgeMetric unset, or set controller.enabled: false)"
        )
    return ControllerArgs(
        service=service,
        namespace=settings.namespace,
        stack=settings.stack,
        plan_path=settings.plan,
        notifications=plan.notifications,
        controller=settings.controller,
        region=settings.region,
        collected=tuple(plan.metric(metric) for metric in bridged_metric_ids(plan)),
        monitor_labels=dict(settings.alerts.rule_labels),
    )


def recovery(scope: Scope) -> tuple[BackupSchedule | None, DrillSchedule]:
    """Backups and the scheduled disaster-recovery drills."""
    settings, plan = scope.settings, scope.plan
    backup_args = BackupArgs(
        service=scope.service,
        namespace=scope.namespace,
        objectives=plan.objectives,
        backup=settings.backup,
        region=settings.region,
        image=settings.drills.image,
        options=drill_options(settings, scope.service),
    )
    backups = None
    if settings.backup.enabled:
        backups = BackupSchedule(f"{scope.service}-backups", backup_args, scope.options())
    drills = DrillSchedule(
        f"{scope.service}-drills",
        DrillArgs(
            service=scope.service,
            namespace=scope.namespace,
            stack=settings.stack,
            plan_path=settings.plan,
            role=settings.region_role,
            disaster_recovery=plan.objectives.disaster_recovery,
            drills=settings.drills,
            options=drill_options(settings, scope.service),
            repository_env=tuple(pgbackrest_env(backup_args, database=False)),
            database_secret=settings.backup.database_secret,
        ),
        scope.options(),
    )
    return backups, drills


def export_outputs(scope: Scope) -> None:
    state = scope.settings.rollout
    pulumi.export("stage", state.stage)
    pulumi.export("step", state.step)
    pulumi.export("weights", {c.value: state.weights[c] for c in Colour})
    pulumi.export("httpRoute", {"namespace": scope.namespace, "name": scope.service})
    pulumi.export("regionRole", scope.settings.region_role.failover)
