"""Progression: where promote, hold and rollback take a stack's rollout state."""

from __future__ import annotations

from typing import Any

import pytest
from core_plans import BETA, LIMITED, MEDIUM, PLAN, T0, at, plan

from rollout_policies.core import (
    Action,
    LifecycleRefused,
    StateNotInPlan,
    advance,
    finalize_target,
    is_rolled_back,
    needs_rollback,
    release_start_target,
    retry_target,
    rollback_target,
)
from rollout_policies.plan.model import Plan, TrafficStep
from rollout_policies.state import Colour, RolloutState

NOW = at(days=9)


def state(stage: str, step: int, green: int, **times: Any) -> RolloutState:
    return RolloutState.model_validate(
        {
            "stage": stage,
            "step": step,
            "stable": {"colour": "blue", "version": "4.12.0"},
            "candidate": {"colour": "green", "version": "5.0.0"},
            "weights": {"blue": 100 - green, "green": green},
            "stageStartedAt": times.get("stage_started", T0),
            "stepStartedAt": times.get("step_started", T0),
        }
    )


def config(s: RolloutState) -> dict[str, Any]:
    return s.to_config()


@pytest.mark.parametrize(
    ("before", "move", "after"),
    [
        (state("limited", 0, 2), "next_step", state("limited", 1, 5, step_started=NOW)),
        (state("limited", 1, 5), "next_step", state("limited", 2, 10, step_started=NOW)),
        (state("beta", 0, 2), "next_stage", state("limited", 0, 2, stage_started=NOW, step_started=NOW)),
        (state("limited", 2, 10), "next_stage", state("medium", 0, 30, stage_started=NOW, step_started=NOW)),
        (state("medium", 0, 30), "complete", state("medium", 0, 30)),
    ],
    ids=[
        "first to second step",
        "second to third step",
        "beta to limited",
        "limited to medium",
        "last stage",
    ],
)
def test_promote(before: RolloutState, move: str, after: RolloutState) -> None:
    transition = advance(PLAN, before, Action.PROMOTE, NOW)
    assert (transition.move.value, config(transition.state)) == (move, config(after))


def test_hold_changes_nothing() -> None:
    before = state("limited", 1, 5)
    transition = advance(PLAN, before, Action.HOLD, NOW)
    assert (transition.move.value, transition.changed, transition.state) == ("stay", False, before)


def test_rollback_sends_everything_to_stable_at_step_zero_of_the_same_stage() -> None:
    assert config(rollback_target(PLAN, state("limited", 2, 10), NOW)) == {
        "stage": "limited",
        "step": 0,
        "stable": {"colour": "blue", "version": "4.12.0"},
        "candidate": {"colour": "green", "version": "5.0.0"},
        "weights": {"blue": 100, "green": 0},
        "stageStartedAt": "2026-11-29T09:00:00Z",
        "stepStartedAt": "2026-11-29T09:00:00Z",
        "rolledBack": True,
    }


def test_a_beta_stack_at_zero_weight_still_needs_a_rollback_for_its_cohort() -> None:
    beta = state("beta", 0, 0)
    assert needs_rollback(PLAN, beta) is True
    target = rollback_target(PLAN, beta, NOW)
    assert (target.rolled_back, target.cohort_on, target.candidate_weight) == (True, False, 0)
    assert needs_rollback(PLAN, target) is False


def test_resuming_a_rolled_back_beta_puts_the_cohort_back() -> None:
    rolled_back = rollback_target(PLAN, state("beta", 0, 0), at(days=5))
    transition = advance(PLAN, rolled_back, Action.PROMOTE, NOW)
    assert (transition.move.value, transition.state.rolled_back, transition.state.cohort_on) == (
        "resume",
        False,
        True,
    )


def test_a_rolled_back_state_with_candidate_traffic_is_refused() -> None:
    with pytest.raises(ValueError, match="rolledBack is true but the candidate has 5%"):
        RolloutState.model_validate({**state("limited", 1, 5).model_dump(), "rolled_back": True})


def test_rollback_action_uses_the_rollback_target() -> None:
    transition = advance(PLAN, state("medium", 0, 30), Action.ROLLBACK, NOW)
    assert (transition.move.value, transition.state.weights) == (
        "rollback",
        rollback_target(PLAN, state("medium", 0, 30), NOW).weights,
    )


def test_rollback_keeps_a_green_stable_release_at_100() -> None:
    before = RolloutState.model_validate(
        {
            **state("limited", 1, 5).model_dump(),
            "stable": {"colour": "green", "version": "5.0.0"},
            "candidate": {"colour": "blue", "version": "5.1.0"},
        }
    )
    assert config(rollback_target(PLAN, before, NOW))["weights"] == {"blue": 0, "green": 100}


@pytest.mark.parametrize(
    ("candidate_weight", "rolled_back"),
    [(0, True), (5, False)],
    ids=["no candidate traffic", "step traffic"],
)
def test_is_rolled_back(candidate_weight: int, rolled_back: bool) -> None:
    assert is_rolled_back(PLAN, state("limited", 1, candidate_weight)) is rolled_back


def test_promoting_a_rolled_back_state_resumes_its_step() -> None:
    transition = advance(
        PLAN, state("limited", 0, 0, stage_started=at(days=5), step_started=at(days=5)), Action.PROMOTE, NOW
    )
    assert (transition.move.value, config(transition.state)) == (
        "resume",
        config(state("limited", 0, 2, stage_started=at(days=5), step_started=NOW)),
    )


@pytest.mark.parametrize(
    ("before", "message"),
    [
        (
            state("gamma", 0, 2),
            "rollout state: stage 'gamma' is not in plan test-plan (stages: beta, limited, medium)",
        ),
        (state("limited", 3, 10), "rollout state: step 3 is not in stage limited (it has steps 0..2)"),
    ],
    ids=["unknown stage", "step past the stage's last"],
)
@pytest.mark.parametrize("action", [Action.PROMOTE, Action.HOLD, Action.ROLLBACK], ids=str)
def test_state_outside_the_plan_is_rejected(before: RolloutState, message: str, action: Action) -> None:
    with pytest.raises(StateNotInPlan) as caught:
        advance(PLAN, before, action, NOW)
    assert str(caught.value) == message


# -- the release lifecycle: finalize, release start, retry ------------------------------------------

FULL = MEDIUM.model_copy(update={"id": "full", "steps": (TrafficStep(weight=100, bake="1d"),)})  # type: ignore[arg-type]
WITH_FULL = plan(BETA, LIMITED, FULL)


def test_finalize_marks_the_last_step_at_100_released_and_nothing_else() -> None:
    full = state("full", 0, 100)
    released = finalize_target(WITH_FULL, full)
    assert released == full.model_copy(update={"released": True})
    assert finalize_target(WITH_FULL, released) is released  # finalizing twice changes nothing


@pytest.mark.parametrize(
    ("planned", "before"),
    [(WITH_FULL, state("limited", 1, 5)), (PLAN, state("medium", 0, 30))],
    ids=["mid-release", "last stage below 100%"],
)
def test_finalize_before_100_at_the_last_step_is_refused(planned: Plan, before: RolloutState) -> None:
    with pytest.raises(LifecycleRefused, match=r"finalize needs the last step of stage \w+ with 100%"):
        finalize_target(planned, before)


def test_release_start_after_finalize_swaps_the_colours_at_the_first_stage() -> None:
    released = finalize_target(WITH_FULL, state("full", 0, 100))
    started = release_start_target(WITH_FULL, released, "5.1.0", NOW)
    assert (started.stable.colour, started.stable.version) == (Colour.GREEN, "5.0.0")
    assert (started.candidate.colour, started.candidate.version) == (Colour.BLUE, "5.1.0")
    assert (started.stage, started.step, started.weights) == ("beta", 0, {Colour.BLUE: 2, Colour.GREEN: 98})
    assert (started.released, started.rolled_back, started.stage_started_at) == (False, False, NOW)


def test_release_start_after_a_rollback_keeps_stable_and_keeps_a_pause() -> None:
    rolled = rollback_target(WITH_FULL, state("limited", 2, 10), NOW).model_copy(update={"paused": True})
    started = release_start_target(WITH_FULL, rolled, "5.0.1", NOW)
    assert (started.stable.colour, started.stable.version) == (Colour.BLUE, "4.12.0")
    assert (started.candidate.colour, started.candidate.version) == (Colour.GREEN, "5.0.1")
    assert (started.stage, started.candidate_weight, started.paused) == ("beta", 2, True)


@pytest.mark.parametrize(
    ("before", "hint"),
    [
        (state("limited", 1, 5), "finish (promote to the end and `rollout release finalize`) or roll back"),
        (state("full", 0, 100), "run `rollout release finalize` first"),
    ],
    ids=["mid-release", "at full, not finalized"],
)
def test_release_start_during_a_release_is_refused(before: RolloutState, hint: str) -> None:
    with pytest.raises(LifecycleRefused) as refused:
        release_start_target(WITH_FULL, before, "5.1.0", NOW)
    where = f"is at stage {before.stage} step {before.step} ({before.candidate_weight}% candidate)"
    assert str(refused.value).startswith(f"{where}: {hint}")


def test_retry_restarts_a_rolled_back_stage_from_its_first_step() -> None:
    rolled = rollback_target(PLAN, state("limited", 2, 10), at(days=8))
    retried = retry_target(PLAN, rolled, NOW)
    assert retried == state("limited", 0, 2, stage_started=NOW, step_started=NOW)


def test_retry_is_refused_when_not_rolled_back_or_paused() -> None:
    with pytest.raises(LifecycleRefused, match="and is not rolled back"):
        retry_target(PLAN, state("limited", 1, 5), NOW)
    paused = rollback_target(PLAN, state("limited", 1, 5), NOW).model_copy(update={"paused": True})
    with pytest.raises(LifecycleRefused, match="and is paused: `rollout resume` it first"):
        retry_target(PLAN, paused, NOW)


def test_a_released_state_holds_100_percent_candidate() -> None:
    with pytest.raises(ValueError, match="released is true but the candidate has 30%"):
        RolloutState.model_validate({**config(state("medium", 0, 30)), "released": True})
