"""The stage state machine: where a promotion or a rollback takes a stack's rollout state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rollout_policies.core.decision import Action
from rollout_policies.core.measurement import require_aware
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan, Stage, TrafficStep, UnknownStage
from rollout_policies.state import Colour, Release, RolloutState


class StateNotInPlan(UserError):
    """The stack's state names a stage or step the plan does not have."""


class LifecycleRefused(UserError):
    """A lifecycle verb (release start, finalize, retry) asked of a stack in a state where it does not
    apply. The message is the rest of a sentence about the stack: ``is at stage limited step 1: ...``."""


class Move(StrEnum):
    NEXT_STEP = "next_step"  # the next traffic step within the stage
    NEXT_STAGE = "next_stage"  # the first step of the next stage
    COMPLETE = "complete"  # promoted from the last step of the last stage: the rollout is done
    RESUME = "resume"  # promoting a rolled-back stack restores its step's traffic
    ROLLBACK = "rollback"
    STAY = "stay"  # hold: nothing changes


@dataclass(frozen=True, slots=True)
class Transition:
    move: Move
    state: RolloutState  # the state to write (for STAY and COMPLETE, the state as it was)
    description: str

    @property
    def changed(self) -> bool:
        return self.move not in (Move.STAY, Move.COMPLETE)


def locate(plan: Plan, state: RolloutState) -> tuple[Stage, TrafficStep]:
    """The stage and step a state points at, or StateNotInPlan naming what is wrong."""
    try:
        stage = plan.stage(state.stage)
    except UnknownStage as err:
        raise StateNotInPlan(f"rollout state: {err}") from None
    if state.step >= len(stage.steps):
        raise StateNotInPlan(
            f"rollout state: step {state.step} is not in stage {stage.id} "
            f"(it has steps 0..{len(stage.steps) - 1})"
        )
    return stage, stage.steps[state.step]


def step_weight(step: TrafficStep) -> int:
    """The candidate's share for a step, in the whole percent the stack config stores."""
    return round(step.weight)


def is_rolled_back(plan: Plan, state: RolloutState) -> bool:
    """A rolled-back stack sends no user to the candidate although its step says otherwise.

    ``rolledBack`` says it; a state written before that key existed (0% at a step with weight) is
    read as rolled back too, so promoting it resumes rather than skips a step.
    """
    _, step = locate(plan, state)
    return state.rolled_back or (state.candidate_weight == 0 and step_weight(step) > 0)


def needs_rollback(plan: Plan, state: RolloutState) -> bool:
    """Whether any user can still reach the candidate: by weight, or through the beta cohort route.

    Only an explicit ``rolledBack`` is already done: at beta (0% weight) the cohort still reaches
    the candidate, and so does it in a state written before ``rolledBack`` existed.
    """
    locate(plan, state)
    return not state.rolled_back


def rollback_target(plan: Plan, state: RolloutState, now: datetime) -> RolloutState:
    """Every user to stable: 0% candidate, no cohort route, stable flags (``rolledBack``), at step 0
    of the same stage, with the stage and step clocks restarted.

    The stage stays so the audit trail and the next attempt say where it failed; step 0 and fresh
    clocks mean a fixed candidate must ramp and bake again from the stage's smallest step.
    """
    require_aware(now, "now")
    locate(plan, state)
    return _rebuilt(
        state,
        {
            "step": 0,
            "weights": _weights(state.candidate.colour, 0),
            "stage_started_at": now,
            "step_started_at": now,
            "rolled_back": True,
            "released": False,  # a finalized release rolled back: the previous version serves again
        },
    )


def _where(plan: Plan, state: RolloutState) -> str:
    stage, _ = locate(plan, state)
    return f"is at stage {stage.id} step {state.step} ({state.candidate_weight}% candidate)"


def is_final(plan: Plan, state: RolloutState) -> bool:
    """At the last step of the last stage, with the candidate serving 100% (not rolled back)."""
    stage, _ = locate(plan, state)
    last = plan.stages[-1]
    return (
        stage.id == last.id
        and state.step == len(last.steps) - 1
        and state.candidate_weight == 100
        and not is_rolled_back(plan, state)
    )


def finalize_target(plan: Plan, state: RolloutState) -> RolloutState:
    """The release recorded as finished (``released``): only at the final step with 100% candidate.

    Traffic, versions and clocks stay; an already finalized stack is returned as it is.
    """
    if state.released:
        return state
    if not is_final(plan, state):
        last = plan.stages[-1]
        raise LifecycleRefused(
            f"{_where(plan, state)}: finalize needs the last step of stage {last.id} with 100% on the "
            "candidate (promote it there first)"
        )
    return _rebuilt(state, {"released": True})


def serving(plan: Plan, state: RolloutState) -> Release:
    """The release every user is on once a release is over: the candidate after ``finalize``, stable
    after a rollback. Any other state is a release in progress (LifecycleRefused)."""
    if state.released:
        return state.candidate
    if is_rolled_back(plan, state):
        return state.stable
    hint = (
        "run `rollout release finalize` first"
        if is_final(plan, state)
        else "finish (promote to the end and `rollout release finalize`) or roll back the release first"
    )
    raise LifecycleRefused(f"{_where(plan, state)}: {hint}")


def release_start_target(plan: Plan, state: RolloutState, version: str, now: datetime) -> RolloutState:
    """A new release: what serves every user becomes stable (its colour kept, so a finalized release's
    colours swap), ``version`` the candidate on the other colour, at the first stage's step 0 with its
    weight and fresh clocks; no rollback or release marker. A pause is kept."""
    require_aware(now, "now")
    current = serving(plan, state)
    version = version.strip()
    if not version:
        raise LifecycleRefused("has no new version: --version names the release to start")
    if version == current.version:
        raise LifecycleRefused(
            f"already serves {version} ({current.colour.value}) to every user: --version names a new release"
        )
    first = plan.stages[0]
    candidate = Release(colour=current.colour.other, version=version)
    return _rebuilt(
        state,
        {
            "stage": first.id,
            "step": 0,
            "stable": current.model_dump(),
            "candidate": candidate.model_dump(),
            "weights": _weights(candidate.colour, step_weight(first.steps[0])),
            "stage_started_at": now,
            "step_started_at": now,
            "rolled_back": False,
            "released": False,
        },
    )


def retry_target(plan: Plan, state: RolloutState, now: datetime) -> RolloutState:
    """After a rollback, the same stage again from its first step, with fresh clocks (not paused)."""
    require_aware(now, "now")
    stage, _ = locate(plan, state)
    if not is_rolled_back(plan, state):
        raise LifecycleRefused(
            f"{_where(plan, state)} and is not rolled back: retry restarts a rolled-back stage"
        )
    if state.paused:
        raise LifecycleRefused(f"{_where(plan, state)} and is paused: `rollout resume` it first, then retry")
    return _at(state, stage, 0, now, restart_stage=True)


def advance(plan: Plan, state: RolloutState, action: Action, now: datetime) -> Transition:
    """Apply a decision's action to a state: the one place promotion and rollback move traffic."""
    require_aware(now, "now")
    stage, step = locate(plan, state)
    where = f"{stage.id} step {state.step}"
    if action is Action.HOLD:
        return Transition(Move.STAY, state, f"hold at {where} ({state.candidate_weight}% candidate)")
    if action is Action.ROLLBACK:
        target = rollback_target(plan, state, now)
        return Transition(
            Move.ROLLBACK,
            target,
            f"roll back from {where}: {state.stable.version} ({state.stable.colour.value}) gets 100%",
        )
    if is_rolled_back(plan, state):
        return Transition(
            Move.RESUME,
            _at(state, stage, state.step, now, restart_stage=False),
            f"resume {where} at {step_weight(step)}% candidate",
        )
    if state.step + 1 < len(stage.steps):
        new = _at(state, stage, state.step + 1, now, restart_stage=False)
        return Transition(
            Move.NEXT_STEP,
            new,
            f"{stage.id}: step {state.step} -> {new.step} ({new.candidate_weight}% candidate)",
        )
    index = plan.stage_index(stage.id)
    if index + 1 < len(plan.stages):
        following = plan.stages[index + 1]
        new = _at(state, following, 0, now, restart_stage=True)
        return Transition(
            Move.NEXT_STAGE, new, f"{stage.id} -> {following.id} ({new.candidate_weight}% candidate)"
        )
    return Transition(
        Move.COMPLETE,
        state,
        f"rollout complete: {state.candidate.version} ({state.candidate.colour.value}) passed {stage.id}",
    )


def _at(state: RolloutState, stage: Stage, step: int, now: datetime, *, restart_stage: bool) -> RolloutState:
    update: dict[str, object] = {
        "stage": stage.id,
        "step": step,
        "weights": _weights(state.candidate.colour, step_weight(stage.steps[step])),
        "step_started_at": now,
        "rolled_back": False,  # any promotion (a resume included) puts the stage's audience back
    }
    if restart_stage:
        update["stage_started_at"] = now
    return _rebuilt(state, update)


def _rebuilt(state: RolloutState, update: dict[str, object]) -> RolloutState:
    # Validate the new state (weights sum, zones) rather than copy past the model's checks.
    return RolloutState.model_validate({**state.model_dump(), **update})


def _weights(candidate: Colour, candidate_weight: int) -> dict[Colour, int]:
    return {candidate: candidate_weight, candidate.other: 100 - candidate_weight}
