"""The stage decision: promote only on complete, fresh, passing evidence; every reason reported."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from core_plans import BETA, PLAN, PLAN_WITH_TRIGGERS, T0, TECHNICAL, at, ok, plan

from rollout_policies.core import (
    Action,
    Evidence,
    Measurement,
    StageDecision,
    decide,
    hold_paused,
    time_to_promotion,
)
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan

NOW = at(days=8)  # past beta's 7d minimum and its step's 1d bake


def fresh(metric_id: str, value: float) -> Measurement:
    return ok(metric_id, value, at(days=8, minutes=-1))


GOOD_BETA = (
    fresh("crash_rate", 0.4),
    fresh("app_load_time", 2.1),
    ok("critical_bugs", 2, at(days=7, hours=12)),
    fresh("daily_active_users", 48),
)
SIGNED = ("positive-feedback", "negative-sentiment")


def replace(
    measurements: tuple[Measurement, ...], new: Measurement | None, metric_id: str
) -> tuple[Measurement, ...]:
    kept = tuple(m for m in measurements if m.metric != metric_id)
    return kept if new is None else (*kept, new)


def beta(
    measurements: tuple[Measurement, ...] = GOOD_BETA,
    signoffs: tuple[str, ...] = SIGNED,
    *,
    now: datetime = NOW,
    in_plan: Plan = PLAN,
) -> StageDecision:
    return decide(
        in_plan,
        "beta",
        0,
        Evidence.of(measurements, signoffs),
        now=now,
        stage_started_at=T0,
        step_started_at=T0,
    )


def summary(decision: StageDecision) -> tuple[str, list[tuple[str, str]]]:
    return decision.action.value, [(r.code.value, str(r)) for r in decision.reasons]


def test_everything_passing_promotes() -> None:
    assert summary(beta()) == (
        "promote",
        [("ready", "beta/step 0: 2 gating gates meet target, bake 1d done; ready for the next stage")],
    )


@pytest.mark.parametrize(
    ("new", "expected_reason"),
    [
        (None, ("gate_no_data", "crash_rate: no measurement of crash_rate")),
        (
            ok("crash_rate", 0.4, at(days=7, hours=23)),
            ("gate_no_data", "crash_rate: stale: observed 1h ago, max age 15m"),
        ),
        (
            Measurement.error("crash_rate", NOW, "connect to 127.0.0.1:9090: connection refused"),
            ("gate_error", "crash_rate: source error: connect to 127.0.0.1:9090: connection refused"),
        ),
        (
            Measurement.no_data("crash_rate", NOW, "empty result"),
            ("gate_no_data", "crash_rate: source returned no data: empty result"),
        ),
    ],
    ids=["missing metric", "stale metric", "unreachable source", "empty answer"],
)
def test_missing_stale_or_failed_data_holds_and_never_promotes(
    new: Measurement | None, expected_reason: tuple[str, str]
) -> None:
    decision = beta(replace(GOOD_BETA, new, "crash_rate"))
    assert (decision.action.value, expected_reason in summary(decision)[1]) == ("hold", True)


def test_missing_metric_also_leaves_the_go_criterion_unknown() -> None:
    assert summary(beta(replace(GOOD_BETA, None, "crash_rate"))) == (
        "hold",
        [
            ("gate_no_data", "crash_rate: no measurement of crash_rate"),
            (
                "criterion_unknown",
                "technical-in-target: All technical metrics within target range: "
                "cannot judge yet: crash_rate",
            ),
            ("criterion_unknown", "crash-rate-over-2: Crash rate >2%: no measurement of crash_rate"),
        ],
    )


def test_gate_between_target_and_alert_holds() -> None:
    assert summary(beta(replace(GOOD_BETA, fresh("app_load_time", 4), "app_load_time"))) == (
        "hold",
        [
            ("gate_between", "app_load_time: 4s misses target < 3, alert > 5 not crossed"),
            (
                "go_not_met",
                "technical-in-target: All technical metrics within target range: "
                "target missed: app_load_time",
            ),
        ],
    )


def test_gate_beyond_alert_rolls_back_and_lists_that_reason_first() -> None:
    assert summary(beta(replace(GOOD_BETA, fresh("crash_rate", 2.5), "crash_rate"))) == (
        "rollback",
        [
            ("gate_beyond_alert", "crash_rate: 2.5% crosses alert > 2"),
            ("no_go_met", "crash-rate-over-2: Crash rate >2%: crash_rate = 2.5: > 2 holds"),
            (
                "go_not_met",
                "technical-in-target: All technical metrics within target range: target missed: crash_rate",
            ),
        ],
    )


def test_monitor_only_gate_with_no_data_does_not_block() -> None:
    assert beta(replace(GOOD_BETA, None, "daily_active_users")).action is Action.PROMOTE


def test_pending_manual_criterion_holds_and_becomes_the_checklist() -> None:
    decision = beta(signoffs=("negative-sentiment",))
    assert (
        summary(decision),
        [c.id for c in decision.pending_signoffs],
        decision.awaiting_signoff_only,
    ) == (
        (
            "hold",
            [
                (
                    "signoff_pending",
                    "positive-feedback: Positive feedback on core features: "
                    "waiting for sign-off by devops-lead or cto",
                )
            ],
        ),
        ["positive-feedback"],
        True,
    )


def test_hold_for_data_is_not_awaiting_signoff_only() -> None:
    assert beta(replace(GOOD_BETA, None, "crash_rate"), signoffs=()).awaiting_signoff_only is False


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(hours=20), ("bake_pending", "beta/step 0: baked 20h of 1d")),
        (at(days=6), ("min_duration_pending", "beta: in stage 6d of minimum 1w")),
    ],
    ids=["bake not elapsed", "stage minimum not elapsed"],
)
def test_time_not_yet_served_holds(now: datetime, expected: tuple[str, str]) -> None:
    measurements = tuple(Measurement(m.metric, m.phase, m.value, now) for m in GOOD_BETA)
    decision = beta(measurements, now=now)
    assert (decision.action.value, expected in summary(decision)[1]) == ("hold", True)


def limited(
    step: int, measurements: tuple[Measurement, ...], *, now: datetime, step_started: datetime
) -> StageDecision:
    return decide(
        PLAN,
        "limited",
        step,
        Evidence.of(measurements),
        now=now,
        stage_started_at=T0,
        step_started_at=step_started,
    )


def test_go_criteria_do_not_apply_before_the_last_step() -> None:
    # 26h in: the 48h clean window cannot be met yet, but leaving step 0 does not need it.
    measurements = (ok("crash_rate", 0.3, at(hours=26)), ok("app_load_time", 1, at(hours=26)))
    assert summary(limited(0, measurements, now=at(hours=26), step_started=T0)) == (
        "promote",
        [("ready", "limited/step 0: 2 gating gates meet target, bake 1d done; ready for step 1")],
    )


def test_go_window_applies_at_the_last_step() -> None:
    measurements = (ok("crash_rate", 0.3, at(days=4)), ok("app_load_time", 1, at(days=4)))
    assert summary(limited(2, measurements, now=at(days=4), step_started=at(days=2))) == (
        "hold",
        [
            (
                "criterion_unknown",
                "no-critical-issues-48h: No critical issues for 48 hours: "
                "critical_issues: window 2d not covered (gap of 2d, max age 1h)",
            )
        ],
    )


def test_not_yet_evaluable_gate_holds() -> None:
    decision = decide(
        PLAN,
        "medium",
        0,
        Evidence.of([ok("retention_7d", 70, at(days=3))]),
        now=at(days=3),
        stage_started_at=T0,
        step_started_at=T0,
    )
    assert summary(decision)[1][0] == (
        "gate_not_yet_evaluable",
        "retention_7d: evaluable 1w into the stage; 3d so far",
    )


def crash_series(value: float) -> tuple[Measurement, ...]:
    return tuple(ok("crash_rate", value, at(days=8, minutes=-m)) for m in range(6, -1, -1))


def test_fired_trigger_rolls_back() -> None:
    evidence = (*replace(GOOD_BETA, None, "crash_rate"), *crash_series(6), fresh("api_error_rate", 0))
    decision = beta(evidence, in_plan=PLAN_WITH_TRIGGERS)
    fired = [str(r) for r in decision.reasons if r.code.value == "trigger_fired"]
    assert (decision.action.value, fired) == (
        "rollback",
        ["crash-rate: Crash Rate > 5%: auto-rollback in 5 minutes: crash_rate > 5 for 6m (window 5m)"],
    )


def test_trigger_without_fresh_data_holds() -> None:
    assert summary(beta(in_plan=PLAN_WITH_TRIGGERS)) == (
        "hold",
        [
            (
                "trigger_unknown",
                "api-error-rate: API Error Rate > 10%: auto-rollback in 2 minutes: "
                "no fresh measurement of api_error_rate (max age 5m)",
            )
        ],
    )


@pytest.mark.parametrize(
    ("stage", "step", "message"),
    [
        ("gamma", 0, "stage 'gamma' is not in plan test-plan (stages: beta, limited, medium)"),
        ("limited", 3, "stage limited has steps 0..2; step 3 is not in plan test-plan"),
    ],
    ids=["unknown stage", "step past the end"],
)
def test_stage_or_step_outside_the_plan_is_a_user_error(stage: str, step: int, message: str) -> None:
    with pytest.raises(UserError) as caught:
        decide(PLAN, stage, step, Evidence(), now=NOW, stage_started_at=T0, step_started_at=T0)
    assert str(caught.value) == message


def test_a_metric_gated_in_two_tables_gives_one_reason() -> None:
    twice = plan(
        BETA.model_copy(update={"tables": (TECHNICAL, TECHNICAL.model_copy(update={"name": "Again"}))})
    )
    decision = decide(
        twice,
        "beta",
        0,
        Evidence.of(replace(GOOD_BETA, None, "crash_rate"), SIGNED),
        now=NOW,
        stage_started_at=T0,
        step_started_at=T0,
    )
    assert [str(r) for r in decision.reasons if r.code.value == "gate_no_data"] == [
        "crash_rate: no measurement of crash_rate"
    ]


def test_promoting_from_the_last_step_of_the_last_stage_completes_the_rollout() -> None:
    decision = decide(
        PLAN,
        "medium",
        0,
        Evidence.of([ok("retention_7d", 70, at(days=8))]),
        now=at(days=8),
        stage_started_at=T0,
        step_started_at=T0,
    )
    assert summary(decision) == (
        "promote",
        [
            (
                "ready",
                "medium/step 0: 1 gating gates meet target, bake 1d done; ready for completing the rollout",
            )
        ],
    )


def test_a_pause_turns_a_promotion_into_a_hold_whose_first_reason_is_the_pause() -> None:
    held = hold_paused(beta(), "paused by oncall in abc: freeze")
    assert held.action is Action.HOLD and not held.awaiting_signoff_only
    assert [(r.code.value, str(r)) for r in held.reasons] == [
        ("paused", "beta/step 0: paused by oncall in abc: freeze")
    ]


def test_a_pause_keeps_the_other_holding_reasons() -> None:
    waiting = beta(signoffs=())  # held only for sign-off: it would open the pull request
    held = hold_paused(waiting, "freeze")
    assert waiting.awaiting_signoff_only and not held.awaiting_signoff_only
    assert held.reasons[1:] == waiting.reasons and held.reasons[0].code.value == "paused"


def test_a_pause_never_blocks_a_rollback() -> None:
    crashing = beta(replace(GOOD_BETA, fresh("crash_rate", 9.0), "crash_rate"))
    assert crashing.action is Action.ROLLBACK
    assert hold_paused(crashing, "freeze") == crashing


def wait(stage_id: str, step: int, *, now: datetime, step_started_at: datetime) -> timedelta:
    return time_to_promotion(
        PLAN, stage_id, step, now=now, stage_started_at=T0, step_started_at=step_started_at
    )


def test_time_to_promotion_before_the_last_step_is_the_bake_left() -> None:
    # limited step 0 bakes 1d; the stage's 4d minimum applies only at its last step
    assert wait("limited", 0, now=at(hours=5), step_started_at=T0) == timedelta(hours=19)


def test_time_to_promotion_at_the_last_step_waits_for_the_longer_of_bake_and_min_duration() -> None:
    # limited step 2 started at day 1 bakes 2d (until day 3); the stage's 4d minimum ends at day 4
    assert wait("limited", 2, now=at(days=2), step_started_at=at(days=1)) == timedelta(days=2)
    # started at day 3, its bake (until day 5) outlasts the minimum
    assert wait("limited", 2, now=at(days=3, hours=12), step_started_at=at(days=3)) == timedelta(
        days=1, hours=12
    )


def test_time_to_promotion_is_zero_once_the_clocks_are_done() -> None:
    assert wait("beta", 0, now=at(days=9), step_started_at=T0) == timedelta(0)


def test_time_to_promotion_rejects_a_step_not_in_the_stage() -> None:
    with pytest.raises(UserError, match=r"stage limited has steps 0\.\.2; step 3"):
        wait("limited", 3, now=at(days=1), step_started_at=T0)
