"""markethub-rollout's public API: everything a program needs, by layer. The architecture is in
docs/architecture.md; anything not named here is internal.

    from rollout_policies import DEFAULT_PLAN, Evidence, advance, decide, load_plan
    plan = load_plan(DEFAULT_PLAN)
    decision = decide(plan, "limited", 1, Evidence(...), now=..., stage_started_at=..., step_started_at=...)

Every public name is imported below, explicitly, so a reader and mypy see where it comes from and
its type. The imports run on first use of a name rather than at ``import rollout_policies``: the
``rollout`` command lives in this package, and its ``--help`` must not pay for pydantic, numpy and
httpx (tests/cli/test_main.py). ``__getattr__`` imports a name from the module ``_MODULE_OF`` gives;
tests/test_public_api.py checks that this map, ``__all__`` and the ``TYPE_CHECKING`` imports name
the same names from the same modules, so none can drift from the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # for mypy and readers; at run time __getattr__ imports each name from _MODULE_OF
    from rollout_policies.core import (
        Action,
        Evidence,
        Measurement,
        StageDecision,
        Verdict,
        advance,
        decide,
        evaluate_triggers,
        rollback_target,
    )
    from rollout_policies.core.sequential import LatencyComparison, RateComparison
    from rollout_policies.errors import UserError
    from rollout_policies.gitops.engine import GitOps
    from rollout_policies.gitops.repo import GitRepo
    from rollout_policies.plan import DEFAULT_PLAN, Plan, PlanError, UnknownStage, load_plan
    from rollout_policies.plan.model import Gate, Stage, Trigger
    from rollout_policies.providers import (
        ComparisonProvider,
        MetricProvider,
        collect,
        collect_evidence,
        provider_for,
    )
    from rollout_policies.stack_file import read_state
    from rollout_policies.state import Colour, RolloutState

__all__ = [
    "DEFAULT_PLAN",
    "Action",
    "Colour",
    "ComparisonProvider",
    "Evidence",
    "Gate",
    "GitOps",
    "GitRepo",
    "LatencyComparison",
    "Measurement",
    "MetricProvider",
    "Plan",
    "PlanError",
    "RateComparison",
    "RolloutState",
    "Stage",
    "StageDecision",
    "Trigger",
    "UnknownStage",
    "UserError",
    "Verdict",
    "advance",
    "collect",
    "collect_evidence",
    "decide",
    "evaluate_triggers",
    "load_plan",
    "provider_for",
    "read_state",
    "rollback_target",
]


# Public name -> the module it is imported from, on first use (the TYPE_CHECKING imports above, by layer).
_MODULE_OF: dict[str, str] = {
    # 1. plan model and loader, rollout state, the stack file
    "DEFAULT_PLAN": "rollout_policies.plan",
    "Plan": "rollout_policies.plan",
    "PlanError": "rollout_policies.plan",
    "UnknownStage": "rollout_policies.plan",
    "load_plan": "rollout_policies.plan",
    "Gate": "rollout_policies.plan.model",
    "Stage": "rollout_policies.plan.model",
    "Trigger": "rollout_policies.plan.model",
    "Colour": "rollout_policies.state",
    "RolloutState": "rollout_policies.state",
    "read_state": "rollout_policies.stack_file",
    # 2. decision core (pure)
    "Action": "rollout_policies.core",
    "Evidence": "rollout_policies.core",
    "Measurement": "rollout_policies.core",
    "StageDecision": "rollout_policies.core",
    "Verdict": "rollout_policies.core",
    "advance": "rollout_policies.core",
    "decide": "rollout_policies.core",
    "evaluate_triggers": "rollout_policies.core",
    "rollback_target": "rollout_policies.core",
    "LatencyComparison": "rollout_policies.core.sequential",
    "RateComparison": "rollout_policies.core.sequential",
    # 3. metric providers
    "ComparisonProvider": "rollout_policies.providers",
    "MetricProvider": "rollout_policies.providers",
    "collect": "rollout_policies.providers",
    "collect_evidence": "rollout_policies.providers",
    "provider_for": "rollout_policies.providers",
    # 4. git and forge
    "GitOps": "rollout_policies.gitops.engine",
    "GitRepo": "rollout_policies.gitops.repo",
    # errors a user can act on (one line, exit status 2)
    "UserError": "rollout_policies.errors",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'rollout_policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
