"""Comparison gates fed by a real Prometheus: per-version range queries -> samples -> the core's test.

Debian's Prometheus scrapes a local exporter every second whose counters (label ``track``:
``candidate``/``stable``, as the simulator exports) a background thread raises at known rates. The
queries use a 3s interval (``increase(...[4s])``: the interval plus one 1 s scrape, step 3s) instead
of the plan's 1m so a few seconds of data give several intervals; waiting for them is a readiness
poll, not an assertion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from devenv.services import free_port
from rollout_policies.core.gates import Verdict, evaluate_stage_gates, judge_comparison
from rollout_policies.core.measurement import LatencySample, Phase, RateSample
from rollout_policies.plan.loader import load_plan
from rollout_policies.plan.model import ComparisonKind, GateComparison, Metric, MetricSource
from rollout_policies.providers import PROVIDERS, ProviderSettings
from rollout_policies.providers.base import QueryFailed
from rollout_policies.providers.collect import collect_comparisons, collect_evidence
from rollout_policies.providers.prometheus import (
    ComparisonFetch,
    PrometheusProvider,
    latency_samples,
    matrix_from,
    rate_samples,
)

pytestmark = pytest.mark.services

INTERVAL = timedelta(seconds=3)
SCRAPE = timedelta(seconds=1)  # the test Prometheus' scrape_interval
TICK = 0.1  # seconds between counter increments
TRIALS_PER_TICK = 100.0
SHIPPED_PLAN = Path(__file__).parents[2] / "rollout_policies" / "plans" / "markethub-mobile.yaml"
# Per version and tick: (events, trials) for the rate scenarios, and the share of requests at or
# below each bucket bound for the latency ones.
RATE_SCENARIOS = {
    "clean": {"candidate": 10.0, "stable": 10.0},  # 10% errors on both versions
    "regressed": {"candidate": 30.0, "stable": 10.0},  # the canary errs three times as often
}
BOUNDS = ("0.1", "0.25", "0.5", "1", "+Inf")
FAST = (0.50, 0.80, 0.95, 0.99, 1.0)
SLOW = (0.05, 0.20, 0.50, 0.80, 1.0)  # the canary's p95 moves from 0.5s to above 1s
LATENCY_SCENARIOS = {
    "clean": {"candidate": FAST, "stable": FAST},
    "regressed": {"candidate": SLOW, "stable": FAST},
}


class Traffic:
    """Raises the exporter's counters every ``TICK`` until stopped (Prometheus sees counters grow)."""

    def __init__(self, exporter) -> None:
        self.exporter = exporter
        self.totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.stop = threading.Event()
        self.tick()  # every series exists from the first scrape on
        self.thread = threading.Thread(target=self.run, name="comparison-traffic", daemon=True)
        self.thread.start()

    def add(self, name: str, amount: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.totals[key] = self.totals.get(key, 0.0) + amount
        self.exporter.set(name, self.totals[key], **labels)

    def tick(self) -> None:
        for scenario, events in RATE_SCENARIOS.items():
            for track, bad in events.items():
                self.add(f"{scenario}_errors_total", bad, track=track, colour="x")
                self.add(f"{scenario}_requests_total", TRIALS_PER_TICK, track=track, colour="x")
        for scenario, shares in LATENCY_SCENARIOS.items():
            for track, cumulative in shares.items():
                for bound, share in zip(BOUNDS, cumulative, strict=True):
                    self.add(
                        f"{scenario}_duration_seconds_bucket", TRIALS_PER_TICK * share, track=track, le=bound
                    )

        # By user segment: the candidate serves regular users only (the medium stage keeps VIPs
        # from it); the stable version serves both, VIPs at a fifth of the error rate.
        for track, segment, bad in (
            ("candidate", "regular", 10.0),
            ("stable", "regular", 10.0),
            ("stable", "vip", 2.0),
        ):
            self.add("segmented_errors_total", bad, track=track, segment=segment)
            self.add("segmented_requests_total", TRIALS_PER_TICK, track=track, segment=segment)

        # the shipped plan's series, as simulator/service.py exports them: 1% bad on both versions
        for track in ("candidate", "stable"):
            self.add("markethub_sessions_total", TRIALS_PER_TICK, track=track)
            self.add("markethub_crashes_total", 1.0, track=track)
            self.add("http_server_requests_total", TRIALS_PER_TICK - 1, track=track, code="200")
            self.add("http_server_requests_total", 1.0, track=track, code="500")
            for bound, share in zip(BOUNDS, FAST, strict=True):
                self.add(
                    "http_server_request_duration_seconds_bucket",
                    TRIALS_PER_TICK * share,
                    track=track,
                    le=bound,
                )

    def run(self) -> None:
        while not self.stop.wait(TICK):
            self.tick()


@pytest.fixture(scope="module")
def live(exporter_factory, prometheus_factory) -> Iterator[tuple[PrometheusProvider, datetime]]:
    exporter = exporter_factory()
    started = datetime.now(UTC)
    traffic = Traffic(exporter)
    try:
        prometheus = prometheus_factory(scrape_targets=[exporter.target])
        yield PrometheusProvider(url=prometheus.url), started
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=5)


def rate(scenario: str) -> GateComparison:
    return GateComparison(
        kind=ComparisonKind.RATE,
        events=f"sum by (track) (increase({scenario}_errors_total[4s]))",
        trials=f"sum by (track) (increase({scenario}_requests_total[4s]))",
        interval=INTERVAL,
        scrape_interval=SCRAPE,
    )


def latency(scenario: str) -> GateComparison:
    return GateComparison(
        kind=ComparisonKind.LATENCY,
        quantile=0.95,
        histogram=f"sum by (track, le) (increase({scenario}_duration_seconds_bucket[4s]))",
        interval=INTERVAL,
        scrape_interval=SCRAPE,
    )


def metric(metric_id: str) -> Metric:
    return Metric(
        id=metric_id,
        name=metric_id,
        direction="lower",
        source=MetricSource(provider="prometheus", max_age=timedelta(minutes=1)),
    )


def fetch_enough(
    provider: PrometheusProvider, settings: GateComparison, since: datetime, metric_id: str, want: int = 4
) -> tuple[ComparisonFetch, datetime]:
    """Poll until Prometheus holds ``want`` intervals of both versions (a readiness wait)."""
    deadline = time.monotonic() + 40
    while True:
        now = datetime.now(UTC)
        fetched = provider.compare(settings, now, metric=metric_id, since=since)
        if len(fetched.samples) >= want or time.monotonic() > deadline:
            return fetched, now
        time.sleep(0.5)


def judged(provider, settings, since, metric_id: str, want: int = 4) -> tuple[ComparisonFetch, Verdict, str]:
    fetched, now = fetch_enough(provider, settings, since, metric_id, want)
    part = judge_comparison(settings, metric(metric_id), fetched.samples, now=now, stage_started_at=since)
    return fetched, part.verdict, part.reason


def test_clean_canary_rate_is_not_a_regression(live) -> None:
    provider, since = live

    fetched, verdict, reason = judged(provider, rate("clean"), since, "api_error_rate")

    assert fetched.measurement.phase is Phase.OK, fetched.measurement.message
    assert fetched.measurement.value == len(fetched.samples) >= 4
    assert all(isinstance(s, RateSample) for s in fetched.samples)
    first = fetched.samples[0]
    assert isinstance(first, RateSample)
    # about 3s of traffic per interval: 10 ticks of 100 requests, 10% errors, on each version
    assert 1500 < first.canary_trials < 4500 and 1500 < first.baseline_trials < 4500
    assert first.canary_events == pytest.approx(first.canary_trials / 10, rel=0.2)
    assert [s.observed_at for s in fetched.samples] == sorted(s.observed_at for s in fetched.samples)
    assert all(s.observed_at > since for s in fetched.samples)
    assert verdict in (Verdict.MEETS_TARGET, Verdict.BETWEEN), reason


def test_regressed_canary_rate_is_a_regression(live) -> None:
    provider, since = live

    # Prometheus has no history of the baseline here, so the test starts from its pessimistic
    # dispersion and learns it from the intervals: a 3x ratio needs about a dozen of them
    fetched, verdict, reason = judged(provider, rate("regressed"), since, "api_error_rate", want=14)

    assert fetched.measurement.phase is Phase.OK, fetched.measurement.message
    newest = fetched.samples[-1]
    assert isinstance(newest, RateSample)
    assert newest.canary_events / newest.canary_trials == pytest.approx(0.3, rel=0.2)
    assert newest.baseline_events / newest.baseline_trials == pytest.approx(0.1, rel=0.2)
    assert verdict is Verdict.BEYOND_ALERT, reason
    assert "regression" in reason


def test_latency_histograms_become_per_bucket_counts(live) -> None:
    provider, since = live

    clean, clean_verdict, clean_reason = judged(provider, latency("clean"), since, "api_response_time")
    _, slow_verdict, slow_reason = judged(provider, latency("regressed"), since, "api_response_time")

    assert clean.measurement.phase is Phase.OK, clean.measurement.message
    sample = clean.samples[0]
    assert isinstance(sample, LatencySample)
    assert sample.edges == (0.1, 0.25, 0.5, 1.0)
    total = sum(sample.canary)
    # non-cumulative: 50% / 30% / 15% / 4% / 1% of the interval's requests per bucket
    shares = [count / total for count in sample.canary]
    assert shares == pytest.approx([0.50, 0.30, 0.15, 0.04, 0.01], abs=0.02)
    assert clean_verdict in (Verdict.MEETS_TARGET, Verdict.BETWEEN), clean_reason
    assert slow_verdict is Verdict.BEYOND_ALERT, slow_reason


def test_excluded_segments_are_dropped_from_the_baseline_too(live) -> None:
    """Like against like: with VIPs kept from the candidate, the stable version's VIP series are left
    out of the baseline, so a candidate erring like the stable version's regular users is no regression."""
    provider, since = live
    segmented = GateComparison(
        kind=ComparisonKind.RATE,
        events="sum by (track, segment) (increase(segmented_errors_total[4s]))",
        trials="sum by (track, segment) (increase(segmented_requests_total[4s]))",
        interval=INTERVAL,
        scrape_interval=SCRAPE,
        segment_label="segment",
    )
    deadline = time.monotonic() + 40
    while True:  # readiness: a few intervals in the stage
        now = datetime.now(UTC)
        alike = provider.compare(segmented, now, metric="m", since=since, exclude_segments=("vip",))
        mixed = provider.compare(segmented, now, metric="m", since=since)
        if min(len(alike.samples), len(mixed.samples)) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    def baseline_rate(fetch: ComparisonFetch) -> float:
        in_stage = [s for s in fetch.samples if isinstance(s, RateSample) and s.observed_at > since]
        return sum(s.baseline_events for s in in_stage) / sum(s.baseline_trials for s in in_stage)

    assert alike.measurement.phase is Phase.OK, alike.measurement.message
    assert baseline_rate(alike) == pytest.approx(0.10, rel=0.05)  # stable's regular users only
    assert baseline_rate(mixed) == pytest.approx(0.06, rel=0.05)  # regular and VIP, half each


def test_no_series_is_no_data(live) -> None:
    provider, since = live
    missing = GateComparison(
        kind=ComparisonKind.RATE,
        events="sum by (track) (increase(nobody_exports_this_total[4s]))",
        trials="sum by (track) (increase(nor_this_total[4s]))",
        interval=INTERVAL,
        scrape_interval=SCRAPE,
    )

    fetched = provider.compare(missing, datetime.now(UTC), metric="api_error_rate", since=since)

    assert fetched.measurement.phase is Phase.NO_DATA
    assert "no series" in fetched.measurement.message
    assert fetched.samples == ()
    part = judge_comparison(
        missing, metric("api_error_rate"), fetched.samples, now=datetime.now(UTC), stage_started_at=since
    )
    assert part.verdict is Verdict.NO_DATA


def test_series_without_the_version_label_is_an_error(live) -> None:
    provider, since = live
    ungrouped = GateComparison(
        kind=ComparisonKind.RATE,
        events="sum(increase(clean_errors_total[4s]))",
        trials="sum(increase(clean_requests_total[4s]))",
        interval=INTERVAL,
        scrape_interval=SCRAPE,
    )

    fetched = provider.compare(ungrouped, datetime.now(UTC), metric="api_error_rate", since=since)

    assert fetched.measurement.phase is Phase.ERROR
    assert "without label 'track'" in fetched.measurement.message


def test_prometheus_down_is_an_error() -> None:
    provider = PrometheusProvider(url=f"http://127.0.0.1:{free_port()}", attempts=1, timeout=2)
    now = datetime.now(UTC)

    fetched = provider.compare(rate("clean"), now, metric="api_error_rate", since=now - timedelta(minutes=5))

    assert fetched.measurement.phase is Phase.ERROR
    assert "cannot reach" in fetched.measurement.message
    assert fetched.samples == ()


def test_collect_fetches_every_comparison_of_the_shipped_plan() -> None:
    """The shipped plan's limited stage against a dead Prometheus: one error fetch per comparison
    gate, and evidence without samples (those gates then read no_data and hold)."""
    plan = load_plan(SHIPPED_PLAN, providers=tuple(PROVIDERS))
    settings = ProviderSettings(prometheus_url=f"http://127.0.0.1:{free_port()}", attempts=1, timeout=2)
    now = datetime.now(UTC)

    fetches = collect_comparisons(plan, "limited", now, settings, since=now - timedelta(hours=1))
    evidence = collect_evidence(plan, "limited", now, settings, since=now - timedelta(hours=1))

    assert [f.metric for f in fetches] == ["crash_rate", "api_response_time", "api_error_rate"]
    assert all(f.measurement.phase is Phase.ERROR for f in fetches)
    assert evidence.samples == ()
    assert {m.metric for m in evidence.measurements} >= {"crash_rate", "api_error_rate"}


def test_collect_without_a_prometheus_url_says_so() -> None:
    plan = load_plan(SHIPPED_PLAN, providers=tuple(PROVIDERS))

    fetches = collect_comparisons(plan, "medium", datetime.now(UTC), ProviderSettings())

    assert len(fetches) == 3
    assert all(f.measurement.phase is Phase.ERROR for f in fetches)
    assert all("ROLLOUT_PROMETHEUS_URL" in f.measurement.message for f in fetches)


# --- reading answers and plan fields (no server: the answers are Prometheus's JSON shape) ---


def matrix(*series: tuple[dict[str, str], list[tuple[float, str]]]) -> dict:
    return {"resultType": "matrix", "result": [{"metric": m, "values": v} for m, v in series]}


def test_one_version_twice_asks_for_aggregation() -> None:
    twice = matrix(
        ({"track": "candidate", "code": "500"}, [(1e9, "1")]), ({"track": "candidate"}, [(1e9, "2")])
    )
    trials = matrix(({"track": "candidate"}, [(1e9, "10")]), ({"track": "stable"}, [(1e9, "10")]))

    with pytest.raises(QueryFailed, match=r"several series for track='candidate'.*sum by \(track\)"):
        rate_samples("m", rate("clean"), matrix_from(twice), matrix_from(trials))


def test_events_far_above_trials_is_an_error_and_a_little_above_is_capped() -> None:
    trials = matrix(({"track": "candidate"}, [(1e9, "100")]), ({"track": "stable"}, [(1e9, "100")]))
    a_little = matrix(({"track": "candidate"}, [(1e9, "101")]), ({"track": "stable"}, [(1e9, "3")]))
    far = matrix(({"track": "candidate"}, [(1e9, "300")]), ({"track": "stable"}, [(1e9, "3")]))

    (capped,) = rate_samples("m", rate("clean"), matrix_from(a_little), matrix_from(trials))
    assert (capped.canary_events, capped.canary_trials, capped.baseline_events) == (100.0, 100.0, 3.0)
    with pytest.raises(QueryFailed, match="300 events but 100 trials"):
        rate_samples("m", rate("clean"), matrix_from(far), matrix_from(trials))


def test_other_versions_are_ignored_and_missing_events_count_zero() -> None:
    trials = matrix(
        ({"track": "candidate"}, [(1e9, "50"), (1e9 + 60, "40")]),
        ({"track": "stable"}, [(1e9, "60"), (1e9 + 60, "70")]),
        ({"track": "shadow"}, [(1e9, "5")]),
    )
    events = matrix(({"track": "stable"}, [(1e9 + 60, "2")]))

    samples = rate_samples("m", rate("clean"), matrix_from(events), matrix_from(trials))

    assert [(s.canary_events, s.canary_trials, s.baseline_events, s.baseline_trials) for s in samples] == [
        (0.0, 50.0, 0.0, 60.0),
        (0.0, 40.0, 2.0, 70.0),
    ]


def test_histogram_without_inf_bucket_is_an_error() -> None:
    buckets = matrix(
        *(({"track": t, "le": le}, [(1e9, "5")]) for t in ("candidate", "stable") for le in ("0.1", "0.5"))
    )

    with pytest.raises(QueryFailed, match=r'no le="\+Inf" bucket'):
        latency_samples("m", latency("clean"), matrix_from(buckets))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "rate", "events": "a"}, "give both events and trials"),
        ({"kind": "rate", "histogram": "h"}, "histogram is for latency"),
        ({"kind": "latency", "events": "a", "trials": "b"}, "events and trials are for rate"),
        ({"kind": "rate", "canary": "blue", "baseline": "blue"}, "must be different"),
        ({"kind": "latency", "histogram": "h", "interval": "0s"}, r"interval\n.*must be longer than zero"),
    ],
)
def test_plan_rejects_inconsistent_comparison_queries(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GateComparison.model_validate(fields)


def test_a_comparison_without_queries_needs_a_metrics_file() -> None:
    assert GateComparison(kind=ComparisonKind.RATE).live_queries == ()
    fetched = PrometheusProvider(url="http://127.0.0.1:9").compare(
        GateComparison(kind=ComparisonKind.RATE), datetime.now(UTC), metric="m"
    )
    assert fetched.measurement.phase is Phase.ERROR
    assert "names no PromQL queries" in fetched.measurement.message


def test_collect_evidence_feeds_the_shipped_plans_comparison_gates(live, tmp_path: Path) -> None:
    """The shipped plan with its interval shortened from 1m to 3s, its scrape interval to the test
    Prometheus' 1 s and its ranges to match (the only changes):
    every comparison gate of the limited stage gets samples and a verdict from the test."""
    provider, since = live
    text = (
        SHIPPED_PLAN.read_text()
        .replace("[75s]))", "[4s]))")
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("interval: 1m", "interval: 3s")
    )
    (tmp_path / "plan.yaml").write_text(text)
    plan = load_plan(tmp_path / "plan.yaml", providers=tuple(PROVIDERS))
    settings = ProviderSettings(prometheus_url=provider.client.url, attempts=1)
    compared = {"crash_rate", "api_response_time", "api_error_rate"}
    deadline = time.monotonic() + 40
    while True:  # readiness: at least two intervals of every compared metric
        now = datetime.now(UTC)
        evidence = collect_evidence(plan, "limited", now, settings, since=since)
        if all(len(evidence.samples_of(m)) >= 2 for m in compared) or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    stage = plan.stage("limited")
    verdicts = evaluate_stage_gates(
        stage, {m.id: m for m in plan.metrics}, evidence, now=now, stage_started_at=since, step=0
    )

    parts = {v.metric: v.comparison for v in verdicts if v.comparison is not None}
    assert set(parts) == compared
    for metric_id, part in parts.items():
        assert part.result is not None, (metric_id, part.reason)
        assert part.verdict in (Verdict.MEETS_TARGET, Verdict.BETWEEN), (metric_id, part.reason)
    kinds = {type(s) for s in evidence.samples_of("api_response_time")}
    assert kinds == {LatencySample}


class _StageLongClient:
    """A stand-in for Prometheus' range API over a 14-day stage (a real server here has seconds of
    data, not weeks): it answers any range with one point per step per version and records the
    ranges asked, refusing more than 11,000 points as Prometheus does."""

    def __init__(self) -> None:
        self.asked: list[tuple[datetime, datetime]] = []

    def instant_query(self, promql: str, at: datetime) -> dict:
        raise AssertionError("comparisons use range queries")

    def range_query(self, promql: str, start: datetime, end: datetime, step: timedelta) -> dict:
        points = int((end - start) / step) + 1
        if points > 11_000:
            return {"resultType": "error"}
        self.asked.append((start, end))
        value = "1" if "errors" in promql else "100"
        stamps = [(start + i * step).timestamp() for i in range(points)]
        return {
            "resultType": "matrix",
            "result": [
                {"metric": {"track": track}, "values": [[t, value] for t in stamps]}
                for track in ("candidate", "stable")
            ],
        }


def test_a_fourteen_day_stage_is_read_whole_in_chunks() -> None:
    """The anytime guarantee needs every interval since the stage start: 20,160 one-minute steps
    are asked in consecutive chunks of at most 10,000 (plus a day of baseline history before)."""
    client = _StageLongClient()
    provider = PrometheusProvider(client=client)
    settings = GateComparison(
        kind=ComparisonKind.RATE,
        events="sum by (track) (increase(errors_total[75s]))",
        trials="sum by (track) (increase(requests_total[75s]))",
        scrape_interval=timedelta(seconds=15),
    )
    now = datetime(2026, 12, 15, tzinfo=UTC)
    since = now - timedelta(days=14)

    fetched = provider.compare(settings, now, metric="api_error_rate", since=since)

    assert fetched.measurement.phase is Phase.OK, fetched.measurement.message
    in_stage = [s for s in fetched.samples if s.observed_at > since]
    history = [s for s in fetched.samples if s.observed_at <= since]
    assert len(in_stage) == 14 * 24 * 60
    assert in_stage[0].observed_at == since + timedelta(minutes=1)
    assert len(history) == 24 * 60 + 1
    assert all(isinstance(s, RateSample) and s.canary_trials == 0 for s in history)
    per_query = len(client.asked) // 2
    assert per_query == 3  # 21,601 steps (15 days and one): 10,000 + 10,000 + 1,601
    starts = [a for a, _ in client.asked[:per_query]]
    ends = [b for _, b in client.asked[:per_query]]
    assert all(b + timedelta(minutes=1) == a for a, b in zip(starts[1:], ends[:-1], strict=True))
