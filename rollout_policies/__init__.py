"""markethub-rollout's public API: everything a program needs, by layer. The architecture is in
docs/architecture.md; anything not named here is internal.

    from rollout_policies import DEFAULT_PLAN, Evidence, advance, decide, load_plan
    plan = load_plan(DEFAULT_PLAN)
    decision = decide(plan, "limited", 1, Evidence(...), now=..., stage_started_at=..., step_started_at=...)

Every public name is imported below, explicitly, so a reader and mypy see where it comes from and
its type. The imports run on first use of a name rather than at ``import rollout_policies``: the
``rollout`` command lives in this package, and its ``--help`` must not pay for pydantic, numpy and
httpx (tests/cli/test_main.py). ``__getattr__`` runs the one import statement below that names the
attribute; there is no second list to keep in step.
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # 1. plan model and loader, rollout state, the stack file
    # 2. decision core (pure)
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

    # errors a user can act on (one line, exit status 2)
    from rollout_policies.errors import UserError

    # 4. git and forge
    from rollout_policies.gitops.engine import GitOps
    from rollout_policies.gitops.repo import GitRepo
    from rollout_policies.plan import DEFAULT_PLAN, Plan, PlanError, UnknownStage, load_plan
    from rollout_policies.plan.model import Gate, Stage, Trigger

    # 3. metric providers
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


@cache
def public_imports() -> dict[str, str]:
    """Public name -> the module the ``TYPE_CHECKING`` block above imports it from."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: str(node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def __getattr__(name: str) -> Any:
    module = public_imports().get(name) if name in __all__ else None
    if module is None:
        raise AttributeError(f"module 'rollout_policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
