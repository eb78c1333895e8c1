"""The pure decision core: gate verdicts, criteria, triggers, the stage decision and progression.

No I/O and no clock: plan, measurements and "now" come in as values. This module is its public API.
"""

from rollout_policies.core.criteria import CriterionResult, CriterionStatus, evaluate_criterion
from rollout_policies.core.decision import (
    Action,
    Reason,
    ReasonCode,
    StageDecision,
    decide,
    hold_paused,
    time_to_promotion,
)
from rollout_policies.core.gates import (
    ComparisonState,
    ComparisonVerdict,
    GateVerdict,
    Verdict,
    evaluate_gate,
    evaluate_stage_gates,
    judge_comparison,
)
from rollout_policies.core.measurement import (
    ComparisonSample,
    DrillResult,
    Evidence,
    LatencySample,
    Measurement,
    Phase,
    RateSample,
)
from rollout_policies.core.progression import (
    LifecycleRefused,
    Move,
    StateNotInPlan,
    Transition,
    advance,
    finalize_target,
    is_final,
    is_rolled_back,
    locate,
    needs_rollback,
    release_start_target,
    retry_target,
    rollback_target,
)
from rollout_policies.core.ranges import judged, within_range
from rollout_policies.core.report import decision_as_dict, render_text
from rollout_policies.core.triggers import TriggerResult, TriggerStatus, evaluate_trigger, evaluate_triggers

__all__ = [
    "Action",
    "ComparisonSample",
    "ComparisonState",
    "ComparisonVerdict",
    "CriterionResult",
    "CriterionStatus",
    "DrillResult",
    "Evidence",
    "GateVerdict",
    "LatencySample",
    "LifecycleRefused",
    "Measurement",
    "Move",
    "Phase",
    "RateSample",
    "Reason",
    "ReasonCode",
    "StageDecision",
    "StateNotInPlan",
    "Transition",
    "TriggerResult",
    "TriggerStatus",
    "Verdict",
    "advance",
    "decide",
    "decision_as_dict",
    "evaluate_criterion",
    "evaluate_gate",
    "evaluate_stage_gates",
    "evaluate_trigger",
    "evaluate_triggers",
    "finalize_target",
    "hold_paused",
    "is_final",
    "is_rolled_back",
    "judge_comparison",
    "judged",
    "locate",
    "needs_rollback",
    "release_start_target",
    "render_text",
    "retry_target",
    "rollback_target",
    "time_to_promotion",
    "within_range",
]
