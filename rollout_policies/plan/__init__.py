"""The rollout plan: the typed model, the YAML loader and the normalized export."""

from rollout_policies.plan.export import plan_to_data
from rollout_policies.plan.loader import DEFAULT_PLAN, KNOWN_PROVIDERS, load_plan, parse_plan
from rollout_policies.plan.model import Plan, PlanError, UnknownStage

__all__ = [
    "DEFAULT_PLAN",
    "KNOWN_PROVIDERS",
    "Plan",
    "PlanError",
    "UnknownStage",
    "load_plan",
    "parse_plan",
    "plan_to_data",
]
