"""The rollout's invariants as pure checks: each takes plain values and returns its violations.

The policy pack (``infra.policy_pack``, loaded by ``policy/``) is a thin wrapper that feeds these
the resources of a preview; tests call them directly. A violation is one line that says what is
wrong and what the plan allows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra import naming
from infra.failover import ANN_FAILOVER
from rollout_policies.plan.model import Plan, UnknownStage
from rollout_policies.state import Colour

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SERVICE = "kubernetes:core/v1:Service"
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
VELERO_SCHEDULE = "kubernetes:velero.io/v1:Schedule"
CRONJOB = "kubernetes:batch/v1:CronJob"


@dataclass(frozen=True)
class KubeObject:
    """A resource as a policy sees it: its Pulumi type token and its properties (a manifest)."""

    type: str
    props: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def metadata(self) -> Mapping[str, Any]:
        metadata = self.props.get("metadata") or {}
        return metadata if isinstance(metadata, Mapping) else {}

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.metadata.get("annotations") or {}


# ---------------------------------------------------------------- weights sum to 100


def check_weights(weights: Mapping[str, float]) -> list[str]:
    """Blue and green are both named, each within 0..100, and together exactly 100."""
    problems = []
    if set(weights) != {Colour.BLUE.value, Colour.GREEN.value}:
        problems.append(f"weights must name blue and green, not {sorted(weights)}")
    problems += [f"weight of {c} is {w:g}, outside 0..100" for c, w in weights.items() if not 0 <= w <= 100]
    total = sum(weights.values())
    if total != 100:
        problems.append(f"weights sum to {total:g}, not 100 ({_show(weights)})")
    return problems


def route_weights(route: KubeObject) -> dict[str, float]:
    """The weights of an HTTPRoute's weighted rule (the rule without header matches), by colour."""
    for rule in route.props.get("spec", {}).get("rules", []):
        if any(match.get("headers") for match in rule.get("matches", [])):
            continue
        weights: dict[str, float] = {}
        for ref in rule.get("backendRefs", []):
            colour = str(ref.get("name", "")).rsplit("-", 1)[-1]
            weights[colour] = weights.get(colour, 0) + float(ref.get("weight", 1))
        return weights
    return {}


def annotated_weights(route: KubeObject) -> dict[str, float] | None:
    text = route.annotations.get(naming.ANN_WEIGHTS)
    if text is None:
        return None
    try:
        return {str(k): float(v) for k, v in json.loads(text).items()}
    except (ValueError, AttributeError):
        return {}


def check_route(route: KubeObject) -> list[str]:
    """An HTTPRoute's backend weights sum to 100 and agree with the rollout state it was built from."""
    weights = route_weights(route)
    problems = [f"HTTPRoute {route.name}: {p}" for p in check_weights(weights)]
    stated = annotated_weights(route)
    if stated is not None and stated != weights:
        problems.append(
            f"HTTPRoute {route.name}: backends give {_show(weights)}"
            f" but the rollout state says {_show(stated)}"
        )
    return problems


# ---------------------------------------------------------------- no skipped stage, no step beyond the plan


def check_step(plan: Plan, stage_id: str, step: int, candidate_weight: float) -> list[str]:
    """The candidate's weight is at most the plan's weight for this stage and step.

    Lower is allowed: that is a hold below the step or a rollback (weight 0). A weight that belongs
    to a later stage is reported as skipping the stages in between.
    """
    try:
        stage = plan.stage(stage_id)
    except UnknownStage as err:
        return [str(err)]
    stage_ids = [stage.id for stage in plan.stages]
    if not 0 <= step < len(stage.steps):
        return [f"stage {stage_id} has steps 0..{len(stage.steps) - 1}; step {step} skips beyond the plan"]
    allowed = stage.steps[step].weight
    if candidate_weight <= allowed:
        return []
    index = stage_ids.index(stage_id)
    stage_max = max(s.weight for s in stage.steps)
    if candidate_weight > stage_max:
        reached = next(
            (
                later
                for later in plan.stages[index + 1 :]
                if candidate_weight <= max(s.weight for s in later.steps)
            ),
            plan.stages[-1],
        )
        skipped = stage_ids[index + 1 : stage_ids.index(reached.id)]
        where = f"stage {reached.id}'s weight" + (f", skipping {', '.join(skipped)}" if skipped else "")
        return [
            f"candidate weight {candidate_weight:g}% at stage {stage_id} step {step}"
            f" (plan allows {allowed:g}%) is {where}: promote one stage at a time"
        ]
    return [
        f"candidate weight {candidate_weight:g}% exceeds stage {stage_id} step {step},"
        f" which allows {allowed:g}%"
    ]


def route_step(route: KubeObject) -> tuple[str, int, float] | None:
    """(stage, step, candidate weight) from the annotations every router stamps on its route."""
    annotations = route.annotations
    stage = annotations.get(naming.ANN_STAGE)
    step = annotations.get(naming.ANN_STEP)
    candidate = annotations.get(naming.ANN_CANDIDATE, Colour.GREEN.value)
    if stage is None or step is None:
        return None
    weights = annotated_weights(route) or route_weights(route)
    return stage, int(step), float(weights.get(candidate, 0.0))


# ---------------------------------------------------------------- green has an HPA and a PDB


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_protected(objects: Sequence[KubeObject]) -> list[str]:
    """Every colour's Deployment (green above all) has an HPA targeting it and a PDB covering its pods."""
    hpa_targets = {
        o.props.get("spec", {}).get("scaleTargetRef", {}).get("name")
        for o in objects
        if o.type == HPA and o.props.get("spec", {}).get("scaleTargetRef", {}).get("kind") == "Deployment"
    }
    pdb_selectors = [
        o.props.get("spec", {}).get("selector", {}).get("matchLabels", {}) for o in objects if o.type == PDB
    ]
    problems = []
    deployments = [o for o in objects if o.type == DEPLOYMENT and naming.COLOUR in o.labels]
    colours = {o.labels[naming.COLOUR] for o in deployments}
    if Colour.GREEN.value not in colours:
        problems.append("no green Deployment: a blue-green rollout needs one")
    for deployment in deployments:
        colour = deployment.labels[naming.COLOUR]
        pod_labels = (
            deployment.props.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        )
        if deployment.name not in hpa_targets:
            problems.append(f"{colour} Deployment {deployment.name} has no HorizontalPodAutoscaler")
        if not any(_matches(selector, pod_labels) for selector in pdb_selectors):
            problems.append(f"{colour} Deployment {deployment.name} has no PodDisruptionBudget")
    return problems


# ---------------------------------------------------------------- every production stack has backups


def is_production(objects: Iterable[KubeObject], stack: str | None) -> bool:
    labelled = {o.labels.get(naming.ENVIRONMENT) for o in objects} - {None}
    if labelled:
        return "production" in labelled
    return bool(stack and stack.startswith("prod"))


def check_backups(objects: Sequence[KubeObject], *, production: bool) -> list[str]:
    """A production stack declares a Velero Schedule and pgBackRest's full and incremental CronJobs."""
    if not production:
        return []
    problems = []
    if not any(o.type == VELERO_SCHEDULE for o in objects):
        problems.append("a production stack needs a Velero Schedule (backup.enabled is false?)")
    for kind in ("full", "incremental"):
        if not any(o.type == CRONJOB and f"-pgbackrest-{kind}-" in o.name for o in objects):
            problems.append(f"a production stack needs pgBackRest's {kind} backup CronJob")
    return problems


# ---------------------------------------------------------------- exactly one PRIMARY region


def failover_roles(objects: Sequence[KubeObject]) -> list[str]:
    return [
        str(o.annotations[ANN_FAILOVER])
        for o in objects
        if o.type == SERVICE and ANN_FAILOVER in o.annotations
    ]


def check_stack_role(objects: Sequence[KubeObject]) -> list[str]:
    """One stack (one region) has exactly one failover record, PRIMARY or SECONDARY."""
    roles = failover_roles(objects)
    if len(roles) != 1:
        return [f"a region stack needs exactly one failover record, found {len(roles)}"]
    if roles[0] not in ("PRIMARY", "SECONDARY"):
        return [f"failover role {roles[0]!r} is neither PRIMARY nor SECONDARY"]
    return []


def check_one_primary(roles: Mapping[str, str]) -> list[str]:
    """Across the production stacks (stack -> PRIMARY/SECONDARY), exactly one is PRIMARY."""
    primaries = sorted(stack for stack, role in roles.items() if role.upper() == "PRIMARY")
    if len(primaries) == 1:
        return []
    if not primaries:
        return [
            f"no PRIMARY region among {', '.join(sorted(roles))}: DNS failover has nothing to fail back to"
        ]
    return [f"{len(primaries)} PRIMARY regions ({', '.join(primaries)}): exactly one may be PRIMARY"]


def _show(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{colour} {weight:g}" for colour, weight in sorted(weights.items()))
