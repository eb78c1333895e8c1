"""The stage decision: promote, hold or roll back, with every reason behind it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from rollout_policies.core.criteria import CriterionResult, CriterionStatus, evaluate_criterion
from rollout_policies.core.durations import span
from rollout_policies.core.gates import ComparisonState, GateVerdict, Verdict, evaluate_stage_gates
from rollout_policies.core.measurement import Evidence, require_aware
from rollout_policies.core.ranges import judged
from rollout_policies.core.triggers import TriggerResult, TriggerStatus, evaluate_triggers
from rollout_policies.errors import UserError
from rollout_policies.plan.model import CriterionKind, Metric, Plan, Stage, format_duration


class Action(StrEnum):
    PROMOTE = "promote"  # to the next traffic step, or the first step of the next stage
    HOLD = "hold"
    ROLLBACK = "rollback"


class ReasonCode(StrEnum):
    # Roll back.
    GATE_BEYOND_ALERT = "gate_beyond_alert"
    NO_GO_MET = "no_go_met"
    TRIGGER_FIRED = "trigger_fired"
    # Hold.
    GATE_BETWEEN = "gate_between"
    GATE_NO_DATA = "gate_no_data"
    GATE_ERROR = "gate_error"
    GATE_NOT_YET_EVALUABLE = "gate_not_yet_evaluable"
    GO_NOT_MET = "go_not_met"
    CRITERION_UNKNOWN = "criterion_unknown"
    SIGNOFF_PENDING = "signoff_pending"
    TRIGGER_BREACHING = "trigger_breaching"
    TRIGGER_UNKNOWN = "trigger_unknown"
    BAKE_PENDING = "bake_pending"
    MIN_DURATION_PENDING = "min_duration_pending"
    PAUSED = "paused"  # a person paused the stack (`rollout pause`); only `rollout resume` lifts it
    # Promote.
    READY = "ready"


ROLLBACK_CODES = frozenset({ReasonCode.GATE_BEYOND_ALERT, ReasonCode.NO_GO_MET, ReasonCode.TRIGGER_FIRED})

_GATE_CODES = {
    Verdict.BEYOND_ALERT: ReasonCode.GATE_BEYOND_ALERT,
    Verdict.BETWEEN: ReasonCode.GATE_BETWEEN,
    Verdict.NO_DATA: ReasonCode.GATE_NO_DATA,
    Verdict.ERROR: ReasonCode.GATE_ERROR,
    Verdict.NOT_YET_EVALUABLE: ReasonCode.GATE_NOT_YET_EVALUABLE,
}


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    subject: str  # the gate's metric, criterion or trigger id, or the step/stage
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass(frozen=True, slots=True)
class StageDecision:
    """The decision for one stage at one step, and all the evidence it was made from."""

    stage: str
    step: int
    last_step: bool  # promoting from here leaves the stage (go criteria and min_duration apply)
    action: Action
    reasons: tuple[Reason, ...]
    gates: tuple[GateVerdict, ...]
    criteria: tuple[CriterionResult, ...]
    triggers: tuple[TriggerResult, ...]
    now: datetime

    @property
    def pending_signoffs(self) -> tuple[CriterionResult, ...]:
        """Manual criteria still waiting for a person: the promotion pull request's checklist."""
        return tuple(c for c in self.criteria if c.status is CriterionStatus.PENDING_SIGNOFF)

    @property
    def awaiting_signoff_only(self) -> bool:
        """True when the only thing between this hold and a promotion is people signing off.

        The gitops layer may then open the promotion pull request with the pending criteria as its
        checklist; it must never merge it by itself.
        """
        return (
            self.action is Action.HOLD
            and bool(self.reasons)
            and all(r.code is ReasonCode.SIGNOFF_PENDING for r in self.reasons)
        )


def decide(
    plan: Plan,
    stage_id: str,
    step: int,
    evidence: Evidence,
    *,
    now: datetime,
    stage_started_at: datetime,
    step_started_at: datetime,
    comparison_states: Mapping[str, ComparisonState] | None = None,
) -> StageDecision:
    """Decide for a stage at a traffic step.

    ROLLBACK when a gating gate is beyond its alert, a no-go criterion holds, or a rollback trigger
    fired. Otherwise PROMOTE only when every gating gate meets target, no trigger is breaching or
    unknown, the step's bake time has passed, and, at the stage's last step, every go criterion is met,
    every no-go criterion is known not to hold, and the stage's min_duration has passed. Anything else
    is HOLD: missing, stale, failed or not-yet-evaluable data never promotes. A reading outside its
    unit's range is failed data, and at a timestamp tie the worse reading counts (``core.ranges``).

    ``comparison_states``: per metric id, the comparison gates' states of the previous evaluation
    (``core.gates.ComparisonState``; the decision's ``gates`` carry the next ones). They only save
    the replay of the stage's earlier intervals: the decision is the same without them.
    """
    require_aware(now, "now")
    require_aware(stage_started_at, "stage_started_at")
    require_aware(step_started_at, "step_started_at")
    stage = _stage_at(plan, stage_id, step)
    last_step = step == len(stage.steps) - 1

    gates, criteria, triggers = _judge_evidence(
        plan, stage, step, evidence, now, stage_started_at, comparison_states
    )
    reasons = _ordered(
        [
            *_evidence_reasons(gates, criteria, triggers, last_step),
            *_clock_reasons(stage, step, last_step, now, stage_started_at, step_started_at),
        ]
    )
    action = _action(reasons)
    if action is Action.PROMOTE:
        reasons.append(_ready(plan, stage, step, last_step, gates))
    return StageDecision(
        stage=stage.id,
        step=step,
        last_step=last_step,
        action=action,
        reasons=tuple(reasons),
        gates=gates,
        criteria=criteria,
        triggers=triggers,
        now=now,
    )


def hold_paused(decision: StageDecision, why: str) -> StageDecision:
    """The decision for a paused stack: never a promotion. A promote becomes a hold whose first reason
    is the pause (the other holding reasons stay, the "ready" one goes); a rollback stays a rollback,
    because a pause stops promotions, never the safety that takes users off a bad version."""
    if decision.action is Action.ROLLBACK:
        return decision
    paused = Reason(ReasonCode.PAUSED, f"{decision.stage}/step {decision.step}", why)
    kept = tuple(r for r in decision.reasons if r.code is not ReasonCode.READY)
    return replace(decision, action=Action.HOLD, reasons=(paused, *kept))


def time_to_promotion(
    plan: Plan,
    stage_id: str,
    step: int,
    *,
    now: datetime,
    stage_started_at: datetime,
    step_started_at: datetime,
) -> timedelta:
    """How long the clock still holds the next promotion: what is left of the step's bake and, at the
    stage's last step, of the stage's min_duration. Zero when the clock asks for nothing more; the
    gates and criteria may hold it longer, so this is a lower bound, never a promise."""
    require_aware(now, "now")
    require_aware(stage_started_at, "stage_started_at")
    require_aware(step_started_at, "step_started_at")
    stage = _stage_at(plan, stage_id, step)
    waits = [stage.steps[step].bake - (now - step_started_at)]
    if step == len(stage.steps) - 1:
        waits.append(stage.min_duration - (now - stage_started_at))
    return max(timedelta(0), *waits)


def _stage_at(plan: Plan, stage_id: str, step: int) -> Stage:
    """The stage, when ``step`` is one of its steps (an unknown stage is the plan's UnknownStage)."""
    stage = plan.stage(stage_id)
    if not 0 <= step < len(stage.steps):
        raise UserError(
            f"stage {stage.id} has steps 0..{len(stage.steps) - 1}; step {step} is not in plan {plan.name}"
        )
    return stage


def _judge_evidence(
    plan: Plan,
    stage: Stage,
    step: int,
    evidence: Evidence,
    now: datetime,
    stage_started_at: datetime,
    comparison_states: Mapping[str, ComparisonState] | None = None,
) -> tuple[tuple[GateVerdict, ...], tuple[CriterionResult, ...], tuple[TriggerResult, ...]]:
    """The stage's gate verdicts, its go and no-go criteria, and the plan's rollback triggers, each
    over the evidence with impossible readings judged (``core.ranges``)."""
    metrics = _metric_map(plan)
    evidence = judged(evidence, metrics)
    gates = evaluate_stage_gates(
        stage,
        metrics,
        evidence,
        now=now,
        stage_started_at=stage_started_at,
        step=step,
        comparison_states=comparison_states,
    )
    criteria = tuple(
        evaluate_criterion(
            criterion,
            no_go=no_go,
            gate_verdicts=gates,
            metrics=metrics,
            evidence=evidence,
            now=now,
            stage_started_at=stage_started_at,
        )
        for no_go, group in ((False, stage.go), (True, stage.no_go))
        for criterion in group
    )
    return gates, criteria, evaluate_triggers(plan, evidence, now=now)


def _evidence_reasons(
    gates: tuple[GateVerdict, ...],
    criteria: tuple[CriterionResult, ...],
    triggers: tuple[TriggerResult, ...],
    last_step: bool,
) -> list[Reason]:
    """What in the measurements stands in the way: gates off target, criteria, triggers."""
    reasons: list[Reason] = []
    for gate in gates:
        if gate.gating and gate.verdict is not Verdict.MEETS_TARGET:
            reasons.append(Reason(_GATE_CODES[gate.verdict], gate.metric, gate.reason))
    for result in criteria:
        code = _criterion_code(result, last_step)
        if code is not None:
            reasons.append(Reason(code, result.id, f"{result.text}: {result.reason}"))
    for trig in triggers:
        if trig.status is not TriggerStatus.CLEAR:
            reasons.append(Reason(_TRIGGER_CODES[trig.status], trig.id, f"{trig.text}: {trig.reason}"))
    return reasons


def _clock_reasons(
    stage: Stage,
    step: int,
    last_step: bool,
    now: datetime,
    stage_started_at: datetime,
    step_started_at: datetime,
) -> list[Reason]:
    """What the clock still asks for: the step's bake time, and at the last step the stage's minimum."""
    reasons: list[Reason] = []
    baked = now - step_started_at
    bake = stage.steps[step].bake
    if baked < bake:
        reasons.append(
            Reason(
                ReasonCode.BAKE_PENDING,
                f"{stage.id}/step {step}",
                f"baked {span(baked)} of {format_duration(bake)}",
            )
        )
    in_stage = now - stage_started_at
    if last_step and in_stage < stage.min_duration:
        reasons.append(
            Reason(
                ReasonCode.MIN_DURATION_PENDING,
                stage.id,
                f"in stage {span(in_stage)} of minimum {format_duration(stage.min_duration)}",
            )
        )
    return reasons


def _ordered(reasons: list[Reason]) -> list[Reason]:
    """Each reason once (a metric in two tables gives the same reason twice), roll-back reasons
    first: they are what a reader must see first."""
    unique = list(dict.fromkeys(reasons))
    unique.sort(key=lambda r: r.code not in ROLLBACK_CODES)
    return unique


def _action(reasons: list[Reason]) -> Action:
    """Any roll-back reason rolls back; any other reason holds; none promotes."""
    if any(r.code in ROLLBACK_CODES for r in reasons):
        return Action.ROLLBACK
    return Action.HOLD if reasons else Action.PROMOTE


def _ready(plan: Plan, stage: Stage, step: int, last_step: bool, gates: tuple[GateVerdict, ...]) -> Reason:
    """The reason of a promotion: what was met, and where it leads."""
    if not last_step:
        target = f"step {step + 1}"
    elif plan.stage_index(stage.id) + 1 < len(plan.stages):
        target = "the next stage"
    else:
        target = "completing the rollout"
    gating = sum(1 for g in gates if g.gating)
    bake = format_duration(stage.steps[step].bake)
    return Reason(
        ReasonCode.READY,
        f"{stage.id}/step {step}",
        f"{gating} gating gates meet target, bake {bake} done; ready for {target}",
    )


_TRIGGER_CODES = {
    TriggerStatus.FIRED: ReasonCode.TRIGGER_FIRED,
    TriggerStatus.BREACHING: ReasonCode.TRIGGER_BREACHING,
    TriggerStatus.UNKNOWN: ReasonCode.TRIGGER_UNKNOWN,
}


def _criterion_code(result: CriterionResult, last_step: bool) -> ReasonCode | None:
    """What a criterion result means for the decision, or None when it does not stand in the way.

    No-go criteria that can be judged automatically count at every step (a holding one rolls back);
    go criteria and manual sign-offs are about leaving the stage, so they count at its last step.
    """
    manual = result.kind is CriterionKind.MANUAL
    if result.no_go and result.status is CriterionStatus.MET:
        return ReasonCode.NO_GO_MET
    if not last_step and (manual or not result.no_go):
        return None
    if result.status is CriterionStatus.PENDING_SIGNOFF:
        return ReasonCode.SIGNOFF_PENDING
    if result.status is CriterionStatus.UNKNOWN:
        return ReasonCode.CRITERION_UNKNOWN
    if not result.no_go and result.status is CriterionStatus.NOT_MET:
        return ReasonCode.GO_NOT_MET
    return None


def _metric_map(plan: Plan) -> dict[str, Metric]:
    return {metric.id: metric for metric in plan.metrics}
