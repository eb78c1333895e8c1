"""How long a comparison gate takes to judge a whole 14-day stage at 1-minute intervals.

Run: ``python -m bench.replay`` (``make bench-replay``). Without a state the gate
(``core.gates.judge_comparison``) replays every interval of the stage from its start, plus the
baseline's day before it; with the state of the previous evaluation (one minute earlier) it feeds
only the newest interval. This times both for the shipped plan's rate and latency comparisons on
simulated clean counts (fixed seed) at the end of a 14-day stage, three times each, prints the
medians, and checks that the two give the same evidence.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from rollout_policies.core.gates import judge_comparison
from rollout_policies.core.measurement import ComparisonSample, LatencySample, RateSample
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

STAGE_MINUTES = 14 * 24 * 60
HISTORY_MINUTES = 24 * 60
EDGES = tuple(float(x) for x in np.geomspace(0.01, 10.0, 12))
START = datetime(2026, 12, 1, tzinfo=UTC)


def rate_samples(rng: np.random.Generator) -> list[ComparisonSample]:
    history: list[ComparisonSample] = [
        RateSample("api_error_rate", START - timedelta(minutes=i), 0, 0, float(rng.poisson(600)), 60_000)
        for i in range(HISTORY_MINUTES)
    ]
    stage: list[ComparisonSample] = [
        RateSample(
            "api_error_rate",
            START + timedelta(minutes=i + 1),
            float(rng.poisson(6)),
            600,
            float(rng.poisson(594)),
            59_400,
        )
        for i in range(STAGE_MINUTES)
    ]
    return history + stage


def latency_samples(rng: np.random.Generator) -> list[ComparisonSample]:
    probs = np.diff(np.concatenate([[0.0], np.linspace(0.05, 0.999, len(EDGES)), [1.0]]))
    zero = tuple(0.0 for _ in range(len(EDGES) + 1))
    out: list[ComparisonSample] = [
        LatencySample(
            "api_response_time",
            START - timedelta(minutes=i),
            EDGES,
            zero,
            tuple(float(x) for x in rng.multinomial(60_000, probs)),
        )
        for i in range(HISTORY_MINUTES)
    ]
    for i in range(STAGE_MINUTES):
        out.append(
            LatencySample(
                "api_response_time",
                START + timedelta(minutes=i + 1),
                EDGES,
                tuple(float(x) for x in rng.multinomial(600, probs)),
                tuple(float(x) for x in rng.multinomial(59_400, probs)),
            )
        )
    return out


def main() -> int:
    plan = load_plan(DEFAULT_PLAN)
    rng = np.random.default_rng(20261202)
    now = START + timedelta(minutes=STAGE_MINUTES)
    for metric_id, make in (("api_error_rate", rate_samples), ("api_response_time", latency_samples)):
        gate = next(g for s in plan.stages for g in s.gates if g.metric == metric_id and g.comparison)
        metric = next(m for m in plan.metrics if m.id == metric_id)
        assert gate.comparison is not None
        samples = make(rng)
        full_times, step_times = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            full = judge_comparison(gate.comparison, metric, samples, now=now, stage_started_at=START)
            full_times.append(time.perf_counter() - t0)
        # The previous evaluation's state: the stage up to one minute ago (not timed).
        before = judge_comparison(
            gate.comparison, metric, samples[:-1], now=now - timedelta(minutes=1), stage_started_at=START
        )
        for _ in range(3):
            t0 = time.perf_counter()
            step = judge_comparison(
                gate.comparison, metric, samples, now=now, stage_started_at=START, state=before.state
            )
            step_times.append(time.perf_counter() - t0)
        assert step.resumed, "the previous evaluation's state was not used"
        assert step.result is not None and full.result is not None
        same = step.result == full.result and step.verdict is full.verdict
        print(
            f"{metric_id} ({gate.comparison.kind.value}): {STAGE_MINUTES:,} intervals and "
            f"{HISTORY_MINUTES:,} of history, median of 3: whole-stage replay "
            f"{statistics.median(full_times):.2f} s, from the previous evaluation's state "
            f"{statistics.median(step_times) * 1000:.0f} ms ({full.verdict.value}; "
            f"{'same evidence' if same else 'EVIDENCE DIFFERS'})"
        )
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
