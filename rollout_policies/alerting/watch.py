"""``rollout watch``: the polling fallback that evaluates the rollback triggers against Prometheus.

Each tick measures every trigger metric (a Prometheus metric with the same PromQL the alert rules
use; any other with its own provider, as the controller's collector does, so the watch needs no
controller), adds the answers to a rolling history, and runs the core's ``evaluate_triggers`` over
it; a fired trigger rolls the stacks back, as the webhook receiver would. At start the history of
the Prometheus metrics is filled from a range query, so a trigger that has been breaching for its
window fires on the first tick.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from rollout_policies.alerting.receiver import Rollback
from rollout_policies.alerting.rules import trigger_queries
from rollout_policies.core import Evidence, Measurement, TriggerResult, TriggerStatus, evaluate_triggers
from rollout_policies.errors import UserError
from rollout_policies.gitops.engine import RollbackOutcome
from rollout_policies.plan.model import MetricSource, Plan
from rollout_policies.providers.base import MetricProvider
from rollout_policies.providers.prometheus import PrometheusProvider
from rollout_policies.providers.registry import provider_for
from rollout_policies.providers.settings import ProviderSettings

log = logging.getLogger("rollout.alerting")


@dataclass(frozen=True)
class WatchTick:
    """What one tick saw and did."""

    at: datetime
    results: tuple[TriggerResult, ...]
    fired: tuple[str, ...]
    outcome: RollbackOutcome | None = None

    def lines(self) -> list[str]:
        out = [f"{self.at.isoformat()} {r.id}: {r.status.value}: {r.reason}" for r in self.results]
        if self.outcome is not None:
            out.append(f"{self.at.isoformat()} {self.outcome.result}: {self.outcome.message}")
        return out


@dataclass
class TriggerWatch:
    """A rolling history of the trigger metrics and the rollback to run when a trigger fires."""

    plan: Plan
    prometheus_url: str
    stacks: tuple[str, ...]
    rollback: Rollback
    step: timedelta = timedelta(seconds=5)
    timeout: float = 10.0
    history: dict[str, deque[Measurement]] = field(default_factory=dict)
    # Where the non-Prometheus trigger metrics come from (default: the ROLLOUT_* variables).
    settings: ProviderSettings | None = None

    def __post_init__(self) -> None:
        all_queries = trigger_queries(self.plan)
        self.queries = {
            metric: query
            for metric, query in all_queries.items()
            if self.plan.metric(metric).source.provider == "prometheus"
        }
        self.direct = tuple(metric for metric in all_queries if metric not in self.queries)
        settings = self.settings or ProviderSettings.from_env()
        self.providers: dict[str, MetricProvider | UserError] = {}
        for name in dict.fromkeys(self.plan.metric(m).source.provider for m in self.direct):
            try:
                self.providers[name] = provider_for(name, **settings.for_provider(name))
            except UserError as err:
                self.providers[name] = err
        self.provider = PrometheusProvider(url=self.prometheus_url, timeout=self.timeout, attempts=2)
        self.horizon = max(
            (t.window + self.plan.metric(t.metric).source.max_age for t in self.plan.triggers),
            default=timedelta(minutes=5),
        )
        for metric in all_queries:
            self.history.setdefault(metric, deque())

    def _add(self, measurement: Measurement, now: datetime) -> None:
        series = self.history[measurement.metric]
        series.append(measurement)
        while series and now - series[0].observed_at > self.horizon:
            series.popleft()

    def backfill(self, now: datetime) -> int:
        """Fill the history from Prometheus's range API over the horizon; returns samples added."""
        added = 0
        start = now - self.horizon
        with httpx.Client(timeout=self.timeout) as http:
            for metric, query in self.queries.items():
                try:
                    response = http.get(
                        f"{self.prometheus_url.rstrip('/')}/api/v1/query_range",
                        params={
                            "query": query,
                            "start": f"{start.timestamp():.3f}",
                            "end": f"{now.timestamp():.3f}",
                            "step": f"{max(self.step.total_seconds(), 1.0):g}",
                        },
                    )
                    result = response.json()["data"]["result"]
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
                    log.warning("backfill of %s failed: %s", metric, err)
                    continue
                if len(result) != 1:
                    continue  # empty, or several series: the instant queries will say why
                for stamp, text in result[0].get("values", []):
                    try:
                        value = float(text)
                        at = datetime.fromtimestamp(float(stamp), tz=UTC)
                        measurement = Measurement.ok(metric, value, at, "backfill")
                    except (TypeError, ValueError):
                        continue  # NaN (no traffic) is no data
                    self._add(measurement, now)
                    added += 1
        return added

    def measure(self, now: datetime) -> tuple[TriggerResult, ...]:
        for metric, query in self.queries.items():
            source = self.plan.metric(metric).source
            promql = MetricSource(provider="prometheus", query=query, max_age=source.max_age)
            self._add(self.provider.query(promql, now, metric=metric), now)
        for metric in self.direct:
            source = self.plan.metric(metric).source
            provider = self.providers[source.provider]
            if isinstance(provider, UserError):
                self._add(Measurement.error(metric, now, str(provider)), now)
            else:
                self._add(provider.query(source, now, metric=metric), now)
        evidence = Evidence.of(m for series in self.history.values() for m in series)
        return evaluate_triggers(self.plan, evidence, now=now)

    def _evidence(self, metric: str) -> str:
        if metric in self.queries:
            return f"{self.prometheus_url} {self.queries[metric]}"
        source = self.plan.metric(metric).source
        return f"{source.provider} {source.query or source.options}".strip()

    def tick(self, now: datetime) -> WatchTick:
        results = self.measure(now)
        fired = tuple(r for r in results if r.status is TriggerStatus.FIRED)
        if not fired:
            return WatchTick(now, results, ())
        texts = "; ".join(f"{r.text} ({r.reason})" for r in fired)
        outcome = self.rollback(
            self.stacks,
            reason=f"automatic rollback: {texts} (rollout watch)",
            evidence=[self._evidence(r.metric) for r in fired],
            now=now,
        )
        if outcome.result == "rolled-back":
            # A fresh breach must last a whole window again before the next rollback.
            for series in self.history.values():
                series.clear()
        return WatchTick(now, results, tuple(r.id for r in fired), outcome)

    def run(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stop: threading.Event | None = None,
        ticks: int | None = None,
        emit: Callable[[WatchTick], None] = lambda tick: None,
    ) -> list[WatchTick]:
        """Tick every ``step`` until ``stop`` is set or ``ticks`` ran (a bounded loop)."""
        stop = stop or threading.Event()
        done: list[WatchTick] = []
        self.backfill(clock())
        while not stop.is_set() and (ticks is None or len(done) < ticks):
            tick = self.tick(clock())
            emit(tick)
            done.append(tick)
            if ticks is not None and len(done) >= ticks:
                break
            stop.wait(self.step.total_seconds())
        return done
