"""The pulumi-policy wrappers around ``infra.policies``: what ``policy/__main__.py`` registers.

Each wrapper only turns Pulumi's resource views into ``KubeObject`` values and reports the pure
check's violations. Facts that are not in the resources come from the project folder: the plan
(its path is annotated on the route) and the other region stacks' files, for the one-PRIMARY rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra import naming, policies
from infra.policies import KubeObject
from infra.settings import settings_from_stack_file
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan
from rollout_policies.stack_file import stack_files

PACK_NAME = "markethub-rollout"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _objects(args: StackValidationArgs) -> list[KubeObject]:
    return [KubeObject(r.resource_type, r.props) for r in args.resources]


def _report(problems: Iterable[str], report: ReportViolation) -> None:
    for problem in problems:
        report(problem, None)


@cache
def _plan(path: str, root: Path) -> Plan:
    from infra.program import load_plan_file  # the program module pulls in pulumi_kubernetes: load on use

    candidate = Path(path)
    return load_plan_file(candidate if candidate.is_absolute() else root / candidate)


def weights_policy() -> Policy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type == policies.HTTP_ROUTE:
            _report(policies.check_route(KubeObject(args.resource_type, args.props)), report)

    return ResourceValidationPolicy(
        name="rollout-weights-sum-to-100",
        description="The route's blue and green weights sum to 100 and match the stack's rollout state.",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def step_policy(root: Path = PROJECT_ROOT) -> Policy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type != policies.HTTP_ROUTE:
            return
        route = KubeObject(args.resource_type, args.props)
        step = policies.route_step(route)
        plan_path = route.annotations.get(naming.ANN_PLAN)
        if step is None or not plan_path:
            report(
                f"HTTPRoute {route.name} does not say its stage, step and plan (rollout.markethub.io/*)", None
            )
            return
        try:
            plan = _plan(plan_path, root)
        except UserError as err:
            report(f"cannot check the step against the plan: {err}", None)
            return
        _report(policies.check_step(plan, *step), report)

    return ResourceValidationPolicy(
        name="rollout-step-within-plan",
        description="No step skips a stage or sends the candidate more traffic than the plan's step.",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def protection_policy() -> Policy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        _report(policies.check_protected(_objects(args)), report)

    return StackValidationPolicy(
        name="green-has-hpa-and-pdb",
        description="Every colour's Deployment, green above all, has an HPA and a PodDisruptionBudget.",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def backups_policy(stack: Callable[[], str | None] = lambda: os.environ.get("PULUMI_STACK")) -> Policy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        objects = _objects(args)
        production = policies.is_production(objects, stack())
        _report(policies.check_backups(objects, production=production), report)

    return StackValidationPolicy(
        name="production-has-backups",
        description="Every production stack declares Velero schedules and the database dump.",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def region_roles(root: Path) -> dict[str, str]:
    """stack -> PRIMARY/SECONDARY for every production stack file in the project folder."""
    roles: dict[str, str] = {}
    for path in stack_files(root):
        settings = settings_from_stack_file(path)
        if settings.is_production:
            roles[settings.stack] = settings.region_role.failover
    return roles


def primary_policy(
    root: Path = PROJECT_ROOT, stack: Callable[[], str | None] = lambda: os.environ.get("PULUMI_STACK")
) -> Policy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        objects = _objects(args)
        problems = policies.check_stack_role(objects)
        _report(problems, report)
        current = stack()
        if problems or not policies.is_production(objects, current):
            return
        try:
            roles = region_roles(root)
        except UserError as err:
            report(f"cannot read the other region stacks: {err}", None)
            return
        if current:
            # This preview's own role wins over its file: it is what is about to be applied.
            roles[current] = policies.failover_roles(objects)[0]
        _report(policies.check_one_primary(roles), report)

    return StackValidationPolicy(
        name="exactly-one-primary-region",
        description="Each region stack has one failover record; exactly one production region is PRIMARY.",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def all_policies(root: Path = PROJECT_ROOT) -> list[Any]:
    return [weights_policy(), step_policy(root), protection_policy(), backups_policy(), primary_policy(root)]
