"""Comparison gates: the sequential canary-versus-baseline test as a gate verdict and in the decision.

Counts are written out deterministically (the expected counts of each rate), so each case's outcome
is fixed; the test's statistical validity is covered by tests/core/test_sequential.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from core_plans import METRICS, T0, at, gate, ok, plan

from rollout_policies.core import Action, Evidence, Verdict, decide, evaluate_gate
from rollout_policies.core.decision import StageDecision
from rollout_policies.core.gates import ComparisonState, ComparisonVerdict, compares_at, judge_comparison
from rollout_policies.core.measurement import ComparisonSample, LatencySample, RateSample
from rollout_policies.core.report import decision_as_dict, render_text
from rollout_policies.plan.model import ComparisonKind, GateComparison, GateTable, Stage, TrafficStep

API = next(m for m in METRICS if m.id == "api_error_rate")  # max_age 5m
RATE = GateComparison(kind=ComparisonKind.RATE)
LATENCY = GateComparison(kind=ComparisonKind.LATENCY, quantile=0.95)
EDGES = (0.1, 0.25, 0.5, 1.0, 2.5)
BASELINE_HIST = (5000.0, 3000.0, 1000.0, 500.0, 400.0, 100.0)  # 5% above 1s
FAST_HIST = (50.0, 30.0, 10.0, 5.0, 4.0, 1.0)  # the baseline's shape at 1% of its traffic
SLOW_HIST = (30.0, 20.0, 10.0, 20.0, 15.0, 5.0)  # 20% above 1s: its p95 regressed


def rates(multiplier: float, minutes: int, *, start: datetime = T0) -> list[ComparisonSample]:
    """One sample a minute: 1% canary traffic, a 1% baseline error rate, the canary's times multiplier."""
    return [
        RateSample("api_error_rate", start + timedelta(minutes=i + 1), 10 * multiplier, 1000, 990, 99000)
        for i in range(minutes)
    ]


def histograms(canary: tuple[float, ...], minutes: int) -> list[ComparisonSample]:
    return [
        LatencySample("api_error_rate", T0 + timedelta(minutes=i + 1), EDGES, canary, BASELINE_HIST)
        for i in range(minutes)
    ]


@pytest.mark.parametrize(
    ("settings", "samples", "expected", "outcome"),
    [
        (RATE, rates(1, 60), Verdict.MEETS_TARGET, "no_regression"),
        (RATE, rates(3, 30), Verdict.BEYOND_ALERT, "regression"),
        (RATE, rates(1, 3), Verdict.BETWEEN, "continue"),
        (RATE, [], Verdict.NO_DATA, None),
        (LATENCY, histograms(FAST_HIST, 60), Verdict.MEETS_TARGET, "no_regression"),
        (LATENCY, histograms(SLOW_HIST, 10), Verdict.BEYOND_ALERT, "regression"),
        (LATENCY, histograms(FAST_HIST, 2), Verdict.BETWEEN, "continue"),
        (LATENCY, [], Verdict.NO_DATA, None),
    ],
    ids=[
        "clean canary meets target",
        "3x regressed canary rolls back",
        "too little data holds",
        "no counts is no data",
        "latency: clean canary meets target",
        "latency: slower p95 rolls back",
        "latency: too little data holds",
        "latency: no histograms is no data",
    ],
)
def test_comparison_verdict(
    settings: GateComparison, samples: list[ComparisonSample], expected: Verdict, outcome: str | None
) -> None:
    now = samples[-1].observed_at if samples else at(hours=1)
    part = judge_comparison(settings, API, samples, now=now, stage_started_at=T0)
    got = None if part.result is None else part.result.verdict.value
    assert (part.verdict, got) == (expected, outcome)
    if part.result is not None:
        assert part.reason.startswith(f"vs baseline: {outcome}: ")


@pytest.mark.parametrize(
    ("samples", "now", "expected", "words"),
    [
        (rates(1, 60), at(minutes=70), Verdict.NO_DATA, "comparison stale: newest counts 10m old"),
        (rates(3, 30), at(hours=5), Verdict.BEYOND_ALERT, "vs baseline: regression"),
        (rates(1, 10), at(minutes=5), Verdict.ERROR, "after now"),
        (histograms(FAST_HIST, 3), at(minutes=3), Verdict.ERROR, "of kind rate but was given other"),
        (rates(1, 60, start=T0 - timedelta(hours=2)), at(minutes=1), Verdict.NO_DATA, "in this stage"),
    ],
    ids=[
        "stale counts are no data",
        "a regression stays a regression when the counts stop",
        "counts from the future are an error",
        "histograms for a rate comparison are an error",
        "counts before the stage began are not read",
    ],
)
def test_comparison_data_problems(
    samples: list[ComparisonSample], now: datetime, expected: Verdict, words: str
) -> None:
    part = judge_comparison(RATE, API, samples, now=now, stage_started_at=T0)
    assert (part.verdict, words in part.reason) == (expected, True), part.reason


def test_changed_buckets_are_an_error() -> None:
    changed = LatencySample(
        "api_error_rate", at(minutes=4), (0.1, 0.2, 0.5, 1.0, 2.5), FAST_HIST, BASELINE_HIST
    )
    samples = [*histograms(FAST_HIST, 3), changed]
    part = judge_comparison(LATENCY, API, samples, now=at(minutes=4), stage_started_at=T0)
    assert (part.verdict, part.reason) == (
        Verdict.ERROR,
        "comparison failed: histogram buckets changed at 2026-11-20T09:04:00Z",
    )


@pytest.mark.parametrize(
    ("value", "samples", "expected"),
    [
        (0.05, rates(1, 60), Verdict.MEETS_TARGET),  # both meet target
        (0.05, rates(1, 3), Verdict.BETWEEN),  # thresholds pass, the comparison is undecided: hold
        (0.05, rates(3, 30), Verdict.BEYOND_ALERT),  # a regression under every absolute threshold
        (0.05, [], Verdict.NO_DATA),  # thresholds pass, the comparison has nothing: never promote
        (1.5, rates(1, 60), Verdict.BEYOND_ALERT),  # the alert still rolls back a "clean" comparison
        (0.5, rates(1, 60), Verdict.BETWEEN),  # target missed, comparison clean: the worse one holds
        (None, rates(3, 30), Verdict.BEYOND_ALERT),  # no measurement, but a proven regression
    ],
)
def test_gate_is_the_worse_of_thresholds_and_comparison(
    value: float | None, samples: list[ComparisonSample], expected: Verdict
) -> None:
    now = samples[-1].observed_at if samples else at(minutes=30)
    measurement = ok("api_error_rate", value, now) if value is not None else None
    verdict = evaluate_gate(
        gate("api_error_rate", "< 0.1", "> 1", comparison=RATE),
        API,
        measurement,
        now=now,
        stage_started_at=T0,
        samples=samples,
        weight=2,
    )
    assert verdict.verdict is expected, verdict.reason
    assert isinstance(verdict.comparison, ComparisonVerdict)


def test_equal_parts_give_both_reasons() -> None:
    now = at(minutes=3)
    verdict = evaluate_gate(
        gate("api_error_rate", "< 0.1", "> 1", comparison=RATE),
        API,
        ok("api_error_rate", 0.5, now),
        now=now,
        stage_started_at=T0,
        samples=rates(1, 3),
        weight=2,
    )
    assert verdict.verdict is Verdict.BETWEEN
    assert verdict.reason.startswith(
        "0.5% misses target < 0.1, alert > 1 not crossed; vs baseline: continue:"
    )


@pytest.mark.parametrize(
    ("weight", "applies"), [(0, False), (2, True), (50, True), (100, False), (None, True)]
)
def test_comparisons_apply_only_where_traffic_is_split(weight: float | None, applies: bool) -> None:
    now = at(minutes=3)
    verdict = evaluate_gate(
        gate("api_error_rate", "< 0.1", "> 1", comparison=RATE),
        API,
        ok("api_error_rate", 0.05, now),
        now=now,
        stage_started_at=T0,
        samples=[],
        weight=weight,
    )
    assert (compares_at(weight), verdict.verdict, verdict.comparison is not None) == (
        applies,
        Verdict.NO_DATA if applies else Verdict.MEETS_TARGET,
        applies,
    )


def test_a_comparison_only_gate_decides_by_itself() -> None:
    verdict = evaluate_gate(
        gate("api_error_rate", None, None, comparison=RATE),
        API,
        None,
        now=at(minutes=60),
        stage_started_at=T0,
        samples=rates(1, 60),
        weight=5,
    )
    assert (verdict.verdict, verdict.gating) == (Verdict.MEETS_TARGET, True)
    # Where traffic is not split, such a gate has nothing to judge by: it is reported only.
    beta = evaluate_gate(
        gate("api_error_rate", None, None, comparison=RATE),
        API,
        None,
        now=at(minutes=60),
        stage_started_at=T0,
        samples=rates(1, 60),
        weight=0,
    )
    assert (beta.verdict, beta.comparison) == (Verdict.MONITOR, None)


COMPARED = Stage(
    id="limited",
    name="Limited Release",
    audience={"kind": "percentage"},  # type: ignore[arg-type]
    steps=(TrafficStep(weight=1, bake="30m"), TrafficStep(weight=10, bake="1d")),  # type: ignore[arg-type]
    min_duration="2d",  # type: ignore[arg-type]
    tables=(
        GateTable(
            name="Infrastructure Metrics", gates=(gate("api_error_rate", "< 1", "> 2", comparison=RATE),)
        ),
    ),
    rollback_objective="30m",  # type: ignore[arg-type]
)
COMPARED_PLAN = plan(COMPARED)


@pytest.mark.parametrize(
    ("samples", "action", "code"),
    [
        (rates(1, 60), Action.PROMOTE, "ready"),
        (rates(3, 30), Action.ROLLBACK, "gate_beyond_alert"),
        (rates(1, 3), Action.HOLD, "gate_between"),
        ([], Action.HOLD, "gate_no_data"),
    ],
    ids=["clean canary promotes", "regressed canary rolls back", "too little data holds", "missing holds"],
)
def test_decision_from_a_comparison(samples: list[ComparisonSample], action: Action, code: str) -> None:
    now = samples[-1].observed_at if samples else at(minutes=60)
    evidence = Evidence.of([ok("api_error_rate", 0.9, now)], samples=samples)
    decision = decide(COMPARED_PLAN, "limited", 0, evidence, now=now, stage_started_at=T0, step_started_at=T0)
    assert (decision.action, decision.reasons[0].code.value) == (action, code)
    if action is not Action.PROMOTE:
        assert decision.reasons[0].subject == "api_error_rate"


def test_report_carries_the_comparison_evidence() -> None:
    samples = rates(3, 30)
    now = samples[-1].observed_at
    evidence = Evidence.of([ok("api_error_rate", 0.9, now)], samples=samples)
    decision = decide(COMPARED_PLAN, "limited", 0, evidence, now=now, stage_started_at=T0, step_started_at=T0)
    (entry,) = decision_as_dict(decision, plan="p")["gates"]
    assert (entry["verdict"], entry["comparison_verdict"], entry["comparison"]["verdict"]) == (
        "beyond_alert",
        "beyond_alert",
        "regression",
    )
    assert (entry["comparison"]["canary_events"], entry["comparison"]["baseline_trials"]) == (
        900.0,
        2_970_000.0,
    )
    assert entry["comparison_settings"] == {
        "kind": "rate",
        "alpha": 0.01,
        "margin": 0.0,
        "tolerance": 1.5,
        "quantile": None,
        "dispersion": None,
    }
    lines = render_text(decision, plan="p").splitlines()
    row = next(line for line in lines if line.startswith("  vs baseline (rate)"))
    assert row.split()[3:8] == ["3.00x", "<", "1.5x", ">", "1x"]
    assert row.endswith(entry["comparison"]["summary"])


def test_the_baselines_day_before_the_stage_sets_the_dispersion() -> None:
    """Samples before the stage start are the baseline's history (the provider reads a day of it):
    a quiet history lets a 2x regression roll back sooner than the pessimistic start allows, and a
    history that jitters keeps the same counts from rolling back."""
    rng_counts = [990, 1010, 985, 1015, 995, 1005] * 40  # the baseline's minutes: Poisson-like
    jittery = [400, 1600, 700, 1300, 200, 1800] * 40  # the same mean, swinging by a factor of 4

    def history(counts: list[int]) -> list[ComparisonSample]:
        return [
            RateSample("api_error_rate", T0 - timedelta(minutes=len(counts) - i - 1), 0, 0, c, 99_000)
            for i, c in enumerate(counts)
        ]

    stage = rates(2, 4)  # four minutes of a 2x canary

    def verdict(past: list[ComparisonSample]) -> Verdict:
        part = judge_comparison(RATE, API, [*past, *stage], now=at(minutes=4), stage_started_at=T0)
        return part.verdict

    assert verdict(history(rng_counts)) is Verdict.BEYOND_ALERT
    assert verdict([]) is Verdict.BETWEEN  # no history: the pessimistic start is still learning
    assert verdict(history(jittery)) is Verdict.BETWEEN


def test_a_decision_resumed_from_the_previous_states_is_the_same_decision() -> None:
    """decide() hands each comparison gate's state out with its verdict; the next minute's decision
    from those states reads only the new minute and decides as a decision from scratch does."""
    samples = rates(1, 30) + rates(3, 5, start=at(minutes=30))

    def decision_at(minute: int, states: dict[str, ComparisonState] | None = None) -> StageDecision:
        now = at(minutes=minute)
        seen = [s for s in samples if s.observed_at <= now]
        evidence = Evidence.of([ok("api_error_rate", 0.9, now)], samples=seen)
        return decide(
            COMPARED_PLAN,
            "limited",
            0,
            evidence,
            now=now,
            stage_started_at=T0,
            step_started_at=T0,
            comparison_states=states,
        )

    part = decision_at(34).gates[0].comparison
    assert part is not None and part.state is not None and part.state.seen == 34
    fresh = decision_at(35)
    resumed = decision_at(35, {"api_error_rate": part.state})
    after = resumed.gates[0].comparison
    assert after is not None and after.resumed
    assert resumed == fresh and fresh.action is Action.ROLLBACK
    assert fresh.gates[0].comparison is not None and after.result == fresh.gates[0].comparison.result
