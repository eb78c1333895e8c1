"""The deciding process keeps comparison gates' states per stack, stage and stage start, in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollout_policies.core.gates import GateVerdict, judge_comparison
from rollout_policies.core.measurement import ComparisonSample, RateSample
from rollout_policies.gitops.comparison_memory import ComparisonMemory
from rollout_policies.plan.model import ComparisonKind, GateComparison, Metric, MetricSource

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RATE = GateComparison(kind=ComparisonKind.RATE)
METRIC = Metric(id="api_error_rate", name="API errors", unit="%", source=MetricSource(provider="prometheus"))


def samples(minutes: int) -> list[ComparisonSample]:
    return [
        RateSample("api_error_rate", T0 + timedelta(minutes=i + 1), 10, 1000, 990, 99_000)
        for i in range(minutes)
    ]


def gate_verdict(minutes: int) -> GateVerdict:
    """The comparison gate's verdict after the stage's first ``minutes``, as decide() returns it."""
    now = T0 + timedelta(minutes=minutes)
    part = judge_comparison(RATE, METRIC, samples(minutes), now=now, stage_started_at=T0)
    return GateVerdict(
        table="Infrastructure Metrics",
        metric="api_error_rate",
        name="API errors",
        verdict=part.verdict,
        value=None,
        target=None,
        alert=None,
        unit="%",
        reason=part.reason,
        comparison=part,
    )


def test_states_are_kept_per_stack_stage_and_start() -> None:
    memory = ComparisonMemory()
    memory.keep("prod-us", "limited", T0, [gate_verdict(10)])
    kept = memory.states("prod-us", "limited", T0)
    assert kept["api_error_rate"].seen == 10
    assert memory.states("prod-eu", "limited", T0) == {}
    assert memory.states("prod-us", "medium", T0) == {}
    assert memory.states("prod-us", "limited", T0 + timedelta(hours=1)) == {}  # a restarted stage


def test_a_new_stage_replaces_the_stacks_states() -> None:
    memory = ComparisonMemory()
    memory.keep("prod-us", "limited", T0, [gate_verdict(10)])
    memory.keep("prod-us", "medium", T0 + timedelta(days=1), [])
    assert memory.states("prod-us", "limited", T0) == {}
    assert memory.states("prod-us", "medium", T0 + timedelta(days=1)) == {}


def test_a_kept_state_resumes_the_next_minute() -> None:
    memory = ComparisonMemory()
    memory.keep("prod-us", "limited", T0, [gate_verdict(10)])
    state = memory.states("prod-us", "limited", T0)["api_error_rate"]
    now = T0 + timedelta(minutes=11)
    part = judge_comparison(RATE, METRIC, samples(11), now=now, stage_started_at=T0, state=state)
    assert part.resumed
    assert part.result == judge_comparison(RATE, METRIC, samples(11), now=now, stage_started_at=T0).result
