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
from infra.alerts import AlertsArgs, RollbackAlerts
from infra.autoscaling import Autoscaling, AutoscalingArgs
from infra.backups import BackupArgs, BackupSchedule
from infra.bluegreen import BlueGreenArgs, BlueGreenService
from infra.drills import DrillArgs, DrillSchedule
from infra.failover import FailoverArgs, RegionalFailover
from infra.flags import FeatureFlags, FlagsArgs, config_map_name
from infra.settings import KEYS, NAMESPACE, StackSettings, read_settings
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
    backups: BackupSchedule | None
    drills: DrillSchedule


def main() -> RolloutInfra:
    """Read the current stack's config and the plan it names, and declare everything."""
    stack = pulumi.get_stack()
    settings = read_settings(stack_config(), stack=stack)
    plan = load_plan_file(resolve_plan_path(settings.plan))
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


def resolve_plan_path(path: str) -> Path:
    """A relative plan path is taken from the working directory, then from the project root."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
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


def build(settings: StackSettings, plan: Plan) -> RolloutInfra:
    """Declare every component for one stack (one region) from validated settings and the plan."""
    state = settings.rollout
    stage = current_stage(settings, plan)
    if state.step >= len(stage.steps):
        raise UserError(
            f"Pulumi.{settings.stack}.yaml: {NAMESPACE}:rollout.step: stage {stage.id} has "
            f"{len(stage.steps)} step(s), so step {state.step} does not exist"
        )
    service = settings.service_name or plan.service
    ns = settings.namespace
    depends: list[pulumi.Resource] = []
    if settings.create_namespace:
        depends.append(
            kube.apply(
                f"{service}-namespace",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "labels": naming.base_labels(service, "namespace")},
                },
                pulumi.ResourceOptions(),
            )
        )
    in_namespace = pulumi.ResourceOptions(depends_on=depends)

    flags = FeatureFlags(
        f"{service}-flags", FlagsArgs(service=service, namespace=ns, stage=stage), in_namespace
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
        pulumi.ResourceOptions(depends_on=[*depends, flags]),
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
        in_namespace,
    )
    autoscaling = Autoscaling(
        f"{service}-autoscaling",
        AutoscalingArgs(
            service=service,
            namespace=ns,
            state=state,
            stage=stage,
            min_replicas=settings.min_replicas,
            max_replicas=settings.max_replicas,
            headroom=settings.headroom,
            cpu_utilization=settings.cpu_utilization,
            custom_metric=settings.custom_metric,
        ),
        pulumi.ResourceOptions(depends_on=[*depends, blue_green]),
    )
    failover = RegionalFailover(
        f"{service}-failover",
        FailoverArgs(
            service=service,
            namespace=ns,
            region=settings.region,
            role=settings.region_role,
            port=settings.port,
            failover=settings.failover,
        ),
        in_namespace,
    )
    alerts = RollbackAlerts(
        f"{service}-alerts",
        AlertsArgs(
            service=service,
            namespace=ns,
            plan=plan,
            stage=stage,
            stack=settings.stack,
            region=settings.region,
            alerts=settings.alerts,
        ),
        in_namespace,
    )
    backups = None
    if settings.backup.enabled:
        backups = BackupSchedule(
            f"{service}-backups",
            BackupArgs(
                service=service,
                namespace=ns,
                objectives=plan.objectives,
                backup=settings.backup,
                region=settings.region,
            ),
            in_namespace,
        )
    drills = DrillSchedule(
        f"{service}-drills",
        DrillArgs(
            service=service,
            namespace=ns,
            stack=settings.stack,
            plan_path=settings.plan,
            role=settings.region_role,
            disaster_recovery=plan.objectives.disaster_recovery,
            drills=settings.drills,
        ),
        in_namespace,
    )
    pulumi.export("stage", state.stage)
    pulumi.export("step", state.step)
    pulumi.export("weights", {c.value: state.weights[c] for c in Colour})
    pulumi.export("httpRoute", {"namespace": ns, "name": service})
    pulumi.export("regionRole", settings.region_role.failover)
    return RolloutInfra(
        service=blue_green,
        traffic=traffic,
        autoscaling=autoscaling,
        flags=flags,
        failover=failover,
        alerts=alerts,
        backups=backups,
        drills=drills,
    )
