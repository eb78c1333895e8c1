"""Rollback triggers: a condition must hold, unbroken, for its window before it fires."""

from __future__ import annotations

from datetime import datetime

import pytest
from core_plans import CRASH_TRIGGER, METRICS, PLAN_WITH_TRIGGERS, at, ok

from rollout_policies.core import Evidence, Measurement, evaluate_trigger, evaluate_triggers
from rollout_policies.plan.model import Threshold, Trigger

CRASH = {m.id: m for m in METRICS}["crash_rate"]  # max age 15m
DB_LOSS = Trigger(
    id="db-connection-loss",
    text="Database Connection Loss: auto-rollback immediately",
    metric="crash_rate",
    threshold=Threshold.model_validate("> 0"),
    window="0s",  # type: ignore[arg-type]
)


def crash(*points: tuple[float, float]) -> tuple[Measurement, ...]:
    """(minutes after T0, crash rate) pairs."""
    return tuple(ok("crash_rate", value, at(minutes=minute)) for minute, value in points)


def judge(trigger: Trigger, history: tuple[Measurement, ...], now: datetime) -> tuple[str, str]:
    result = evaluate_trigger(trigger, CRASH, history, now=now)
    return result.status.value, result.reason


@pytest.mark.parametrize(
    ("history", "now", "expected"),
    [
        (
            crash((0, 6), (1, 6), (2, 6), (3, 6), (4, 6), (5, 6)),
            at(minutes=5),
            ("fired", "crash_rate > 5 for 5m (window 5m)"),
        ),
        (crash((0, 1), (1, 6), (2, 6), (3, 6)), at(minutes=3), ("breaching", "crash_rate > 5 for 2m of 5m")),
        (
            crash((0, 6), (1, 6), (2, 1), (3, 6), (4, 6), (5, 6)),
            at(minutes=5),
            ("breaching", "crash_rate > 5 for 2m of 5m"),
        ),
        (crash((0, 6), (30, 6)), at(minutes=30), ("breaching", "crash_rate > 5 for 0s of 5m")),
        (crash((0, 6), (5, 1)), at(minutes=5), ("clear", "crash_rate = 1, condition > 5 clear")),
        ((), at(minutes=5), ("unknown", "no fresh measurement of crash_rate (max age 15m)")),
        (
            crash((0, 6), (1, 6)),
            at(minutes=30),
            ("unknown", "no fresh measurement of crash_rate (max age 15m)"),
        ),
        (
            (
                *crash((0, 6), (2, 6)),
                Measurement.error("crash_rate", at(minutes=4), "timeout"),
                *crash((5, 6)),
            ),
            at(minutes=5),
            ("fired", "crash_rate > 5 for 5m (window 5m)"),
        ),
        (crash((1, 6), (6, 6)), at(minutes=5), ("breaching", "crash_rate > 5 for 4m of 5m")),
    ],
    ids=[
        "held for the whole window",
        "held for part of the window",
        "a clear sample restarts the window",
        "a gap longer than max age restarts the window",
        "newest sample clear",
        "no samples",
        "newest sample stale",
        "an error sample neither breaks nor extends",
        "a sample after now is ignored",
    ],
)
def test_crash_rate_trigger(
    history: tuple[Measurement, ...], now: datetime, expected: tuple[str, str]
) -> None:
    assert judge(CRASH_TRIGGER, history, now) == expected


def test_zero_window_fires_on_first_breaching_sample() -> None:
    assert judge(DB_LOSS, crash((10, 1)), at(minutes=10)) == ("fired", "crash_rate > 0 for 0s (window 0s)")


def test_fired_trigger_reports_when_the_breach_began() -> None:
    result = evaluate_trigger(CRASH_TRIGGER, CRASH, crash((0, 1), (1, 6), (7, 7)), now=at(minutes=7))
    assert (result.status.value, result.since) == ("fired", at(minutes=1))


def test_every_plan_trigger_is_evaluated_in_plan_order() -> None:
    evidence = Evidence.of([*crash((0, 6), (5, 6)), ok("api_error_rate", 1, at(minutes=5))])
    results = evaluate_triggers(PLAN_WITH_TRIGGERS, evidence, now=at(minutes=5))
    assert [(r.id, r.status.value) for r in results] == [("crash-rate", "fired"), ("api-error-rate", "clear")]
