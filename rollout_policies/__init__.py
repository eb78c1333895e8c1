"""markethub-rollout's public API: everything a program needs, by layer. The architecture is in
docs/architecture.md; anything not named here is internal.

Names load on first use (PEP 562), so `import rollout_policies` and the `rollout` command stay fast
and the decision core never drags in network clients.

    from rollout_policies import load_plan, decide, advance, Evidence, Measurement
    plan = load_plan(DEFAULT_PLAN)
    decision = decide(plan, "limited", 1, Evidence(...), now=..., stage_started_at=..., step_started_at=...)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # 1. plan model and loader
    "Plan": "rollout_policies.plan.model",
    "Stage": "rollout_policies.plan.model",
    "Gate": "rollout_policies.plan.model",
    "Trigger": "rollout_policies.plan.model",
    "load_plan": "rollout_policies.plan.loader",
    "PlanError": "rollout_policies.plan.loader",
    "DEFAULT_PLAN": "rollout_policies.plan.loader",
    "RolloutState": "rollout_policies.state",
    "Colour": "rollout_policies.state",
    # 2. decision core (pure)
    "Measurement": "rollout_policies.core",
    "Evidence": "rollout_policies.core",
    "Verdict": "rollout_policies.core",
    "Action": "rollout_policies.core",
    "StageDecision": "rollout_policies.core",
    "decide": "rollout_policies.core",
    "advance": "rollout_policies.core",
    "rollback_target": "rollout_policies.core",
    "evaluate_triggers": "rollout_policies.core",
    "RateComparison": "rollout_policies.core.sequential",
    "LatencyComparison": "rollout_policies.core.sequential",
    # 3. metric providers
    "provider_for": "rollout_policies.providers",
    "collect": "rollout_policies.providers",
    # 4. git and forge
    "GitOps": "rollout_policies.gitops.engine",
    "GitRepo": "rollout_policies.gitops.repo",
    # errors a user can act on (one line, exit status 2)
    "UserError": "rollout_policies.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rollout_policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
