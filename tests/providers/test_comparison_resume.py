"""A comparison gate resumed from the previous evaluation's state gives the whole-stage replay's result.

Counters of both versions are simulated with a fixed seed at 15 s scrapes, with counter resets
(a restarted process starts again from 0 and loses what it counted since its last scrape) and
minutes that Prometheus has no sample for. Each minute's ``increase`` goes through the provider's
own conversion (``rate_samples``, ``latency_samples``) and the gate is evaluated once a minute, as
production does: once from scratch over everything fetched, once from the state the previous
evaluation handed back. The two must agree exactly, at every minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from rollout_policies.core.gates import ComparisonState, judge_comparison
from rollout_policies.core.measurement import ComparisonSample
from rollout_policies.plan.model import ComparisonKind, GateComparison, Metric, MetricSource
from rollout_policies.providers.prometheus import Series, latency_samples, rate_samples

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # the stage start
HISTORY = 120  # minutes of the baseline before the stage
SCRAPES = 4  # per minute (15 s)
RATE = GateComparison(kind=ComparisonKind.RATE, scrape_interval=timedelta(seconds=15))
LATENCY = GateComparison(kind=ComparisonKind.LATENCY, quantile=0.95, scrape_interval=timedelta(seconds=15))
METRIC = Metric(
    id="api_error_rate",
    name="API error rate",
    unit="%",
    source=MetricSource(provider="prometheus", query="x", max_age=timedelta(minutes=5)),
)
BOUNDS = (0.1, 0.25, 0.5, 1.0, float("inf"))
SHARES = np.array([0.5, 0.3, 0.14, 0.04, 0.02])  # per bucket; the last is +Inf


def increases(rng: np.random.Generator, per_scrape: np.ndarray, resets: float) -> np.ndarray:
    """Per minute, what increase() reads of a counter fed ``per_scrape`` counts between scrapes.

    A reset (probability ``resets`` per scrape) restarts the counter from 0 between two scrapes: the
    counts of that scrape interval before the restart are lost, as with Prometheus' reset handling.
    """
    kept = per_scrape.copy()
    restarted = rng.random(per_scrape.shape[0]) < resets  # every bucket of a histogram at once
    kept[restarted] = rng.binomial(per_scrape[restarted].astype(np.int64), 0.5)
    minutes = per_scrape.shape[0] // SCRAPES
    out: np.ndarray = kept[: minutes * SCRAPES].reshape(minutes, SCRAPES, *per_scrape.shape[1:]).sum(axis=1)
    return out


def stamps(rng: np.random.Generator, minutes: int, missing: float) -> list[float]:
    """The step timestamps Prometheus has a value for: some minutes are missing."""
    first = T0 - timedelta(minutes=HISTORY - 1)
    kept = rng.random(minutes) >= missing
    return [(first + timedelta(minutes=i)).timestamp() for i in range(minutes) if kept[i]]


def series(track: str, times: list[float], values: np.ndarray, **labels: str) -> Series:
    return ({"track": track, **labels}, [(t, float(values[i])) for i, t in enumerate(times)])


def simulated_rates(seed: int, minutes: int, regression_at: int) -> tuple[list[Series], list[Series]]:
    """Events and trials series per version: 1% errors, 5% canary share, 2x errors from a minute on."""
    rng = np.random.default_rng(seed)
    n = (HISTORY + minutes) * SCRAPES
    trials = {"candidate": rng.poisson(25, n), "stable": rng.poisson(475, n)}
    canary_rate = np.where(np.arange(n) >= (HISTORY + regression_at) * SCRAPES, 0.02, 0.01)
    errors = {
        "candidate": rng.binomial(trials["candidate"], canary_rate),
        "stable": rng.binomial(trials["stable"], 0.01),
    }
    events, totals = [], []
    for track in ("candidate", "stable"):
        minute_errors = increases(rng, errors[track].astype(np.float64), 0.01)
        minute_trials = increases(rng, trials[track].astype(np.float64), 0.01)
        minute_errors = np.minimum(minute_errors, minute_trials)
        times = stamps(rng, HISTORY + minutes, 0.1)
        index = [int((t - (T0.timestamp() - (HISTORY - 1) * 60)) // 60) for t in times]
        events.append(series(track, times, minute_errors[index]))
        totals.append(series(track, times, minute_trials[index]))
    return events, totals


def simulated_histograms(seed: int, minutes: int, regression_at: int) -> list[Series]:
    """Cumulative bucket series per version and ``le``; the canary's slowest 2% twice as many later."""
    rng = np.random.default_rng(seed)
    n = (HISTORY + minutes) * SCRAPES
    out: list[Series] = []
    for track, rps in (("candidate", 100), ("stable", 1900)):
        shares = np.tile(SHARES, (n, 1))
        if track == "candidate":
            late = np.arange(n) >= (HISTORY + regression_at) * SCRAPES
            shares[late] = SHARES * np.array([0.97, 1, 1, 1, 2]) / (SHARES * [0.97, 1, 1, 1, 2]).sum()
        per_scrape = np.array([rng.multinomial(rng.poisson(rps), p) for p in shares], dtype=np.float64)
        per_minute = increases(rng, per_scrape, 0.01)
        cumulative = np.cumsum(per_minute, axis=1)
        times = stamps(rng, HISTORY + minutes, 0.1)
        index = [int((t - (T0.timestamp() - (HISTORY - 1) * 60)) // 60) for t in times]
        for k, bound in enumerate(BOUNDS):
            le = "+Inf" if np.isinf(bound) else f"{bound:g}"
            out.append(series(track, times, cumulative[index, k], le=le))
    return out


def fetched(samples: tuple[ComparisonSample, ...], now: datetime) -> list[ComparisonSample]:
    """What the provider's query returns at ``now``: the history and the stage up to now."""
    return [s for s in samples if s.observed_at <= now]


def evaluate_every_minute(
    settings: GateComparison, samples: tuple[ComparisonSample, ...], minutes: int
) -> tuple[list[str], int]:
    """Judge once a minute both ways; return the verdicts and how many evaluations resumed."""
    state: ComparisonState | None = None
    verdicts, resumed = [], 0
    for minute in range(1, minutes + 1):
        now = T0 + timedelta(minutes=minute)
        seen = fetched(samples, now)
        full = judge_comparison(settings, METRIC, seen, now=now, stage_started_at=T0)
        step = judge_comparison(settings, METRIC, seen, now=now, stage_started_at=T0, state=state)
        assert (step.verdict, step.reason, step.result) == (full.verdict, full.reason, full.result), minute
        resumed += step.resumed
        state = step.state
        verdicts.append(full.verdict.value)
    return verdicts, resumed


@pytest.mark.parametrize("seed", [1, 2])
def test_a_resumed_rate_gate_matches_the_whole_stage_replay(seed: int) -> None:
    events, trials = simulated_rates(seed, 240, regression_at=150)
    samples = rate_samples("api_error_rate", RATE, events, trials, since=T0)
    verdicts, resumed = evaluate_every_minute(RATE, samples, 240)
    assert "beyond_alert" in verdicts  # the regression was caught: the states carried evidence
    assert resumed >= 200  # nearly every evaluation resumed (the first and empty minutes cannot)


def test_a_resumed_latency_gate_matches_the_whole_stage_replay() -> None:
    samples = latency_samples("api_error_rate", LATENCY, simulated_histograms(7, 90, 30), since=T0)
    verdicts, resumed = evaluate_every_minute(LATENCY, samples, 90)
    assert "beyond_alert" in verdicts
    assert resumed >= 70


def test_a_new_stage_start_does_not_resume_the_old_stages_state() -> None:
    events, trials = simulated_rates(4, 120, regression_at=0)  # the old stage saw a 2x canary
    samples = rate_samples("api_error_rate", RATE, events, trials, since=T0)
    now = T0 + timedelta(minutes=60)
    old = judge_comparison(RATE, METRIC, fetched(samples, now), now=now, stage_started_at=T0)
    restart = T0 + timedelta(minutes=30)
    later = T0 + timedelta(minutes=61)
    fresh = judge_comparison(RATE, METRIC, fetched(samples, later), now=later, stage_started_at=restart)
    carried = judge_comparison(
        RATE, METRIC, fetched(samples, later), now=later, stage_started_at=restart, state=old.state
    )
    assert not carried.resumed
    assert (carried.verdict, carried.result) == (fresh.verdict, fresh.result)
    assert carried.result is not None and carried.result.observations < 40  # the restarted stage only


def test_a_revised_interval_or_other_settings_replay_the_stage() -> None:
    events, trials = simulated_rates(5, 60, regression_at=1000)
    samples = list(rate_samples("api_error_rate", RATE, events, trials, since=T0))
    now = T0 + timedelta(minutes=60)
    state = judge_comparison(RATE, METRIC, samples[:-1], now=now, stage_started_at=T0).state
    assert state is not None
    stage_index = next(i for i, s in enumerate(samples) if s.observed_at > T0) + 10
    s = samples[stage_index]
    samples[stage_index] = type(s)(s.metric, s.observed_at, s.canary_events + 3, s.canary_trials, 0, 1000)
    revised = judge_comparison(RATE, METRIC, samples, now=now, stage_started_at=T0, state=state)
    full = judge_comparison(RATE, METRIC, samples, now=now, stage_started_at=T0)
    assert not revised.resumed and revised.result == full.result
    stricter = RATE.model_copy(update={"alpha": 0.001})
    other = judge_comparison(stricter, METRIC, samples, now=now, stage_started_at=T0, state=state)
    assert not other.resumed
    assert other.result == judge_comparison(stricter, METRIC, samples, now=now, stage_started_at=T0).result


def test_resuming_leaves_the_given_state_as_it_was() -> None:
    events, trials = simulated_rates(6, 40, regression_at=20)
    samples = rate_samples("api_error_rate", RATE, events, trials, since=T0)
    now = T0 + timedelta(minutes=40)
    state = judge_comparison(RATE, METRIC, samples[:-5], now=now, stage_started_at=T0).state
    first = judge_comparison(RATE, METRIC, samples, now=now, stage_started_at=T0, state=state)
    again = judge_comparison(RATE, METRIC, samples, now=now, stage_started_at=T0, state=state)
    assert first.resumed and again.resumed
    assert first.result == again.result
