"""The controller's measurement collector: non-Prometheus rule metrics, measured by their providers, exported.

The alert rules read every metric whose source is not Prometheus (the crash reporter's JSON API,
CloudWatch, the analytics database) from one gauge, ``markethub_rollout_measurement{metric,
service}`` (``infra.alerts.bridged_metric_ids``). ``rollout serve`` runs this collector: each metric
is measured by its own provider (the same code ``rollout evaluate`` uses, configured by the same
``ROLLOUT_*`` variables) every ``interval``; a gate-only metric every tenth of its ``max_age`` when
that is longer (at most ``MAX_PERIOD``), so a day-old SQL figure is not re-queried every few
seconds. The gauge
is served from the controller's ``/metrics`` and Prometheus scrapes it.

Only a fresh measurement is exported. A provider error, no data, or a value older than the metric's
``max_age`` removes the metric's series, so the trigger's ``absent()`` rule notifies instead of an
old value standing in for the present. ``markethub_rollout_measurement_phase`` says which it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from infra.alerts import bridged_metric_ids
from infra.settings import Alerts
from rollout_policies.core.measurement import Measurement, Phase
from rollout_policies.errors import UserError
from rollout_policies.plan.model import Metric, Plan
from rollout_policies.providers.base import MetricProvider
from rollout_policies.providers.registry import provider_for
from rollout_policies.providers.settings import ProviderSettings

log = logging.getLogger("rollout.collector")

MAX_PERIOD = timedelta(minutes=10)
_WORKERS = 4  # providers wait on the network; a few at once keeps a round short


def period_for(metric: Metric, interval: timedelta, *, trigger: bool = False) -> timedelta:
    """How often ``metric`` is measured: a trigger's every ``interval`` (a rollback waits on it);
    a gate's every ``interval``, or a tenth of its max_age when that is longer (at most MAX_PERIOD)."""
    if trigger:
        return interval
    return max(interval, min(metric.source.max_age / 10, MAX_PERIOD))


@dataclass(eq=False)  # registries key collectors by identity
class MeasurementCollector(Collector):
    """Measures the plan's bridged metrics on schedule and exports the fresh ones (a prometheus_client
    ``Collector``: register it on the registry ``/metrics`` serves)."""

    plan: Plan
    settings: ProviderSettings
    interval: timedelta = timedelta(seconds=15)
    gauge: str = field(default_factory=lambda: Alerts().bridge_metric)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    providers: Mapping[str, MetricProvider | UserError] | None = None

    def __post_init__(self) -> None:
        self.metrics = tuple(self.plan.metric(m) for m in bridged_metric_ids(self.plan))
        self.trigger_metrics = frozenset(t.metric for t in self.plan.triggers)
        if self.providers is None:
            built: dict[str, MetricProvider | UserError] = {}
            for name in dict.fromkeys(m.source.provider for m in self.metrics):
                try:
                    built[name] = provider_for(name, **self.settings.for_provider(name))
                except UserError as err:  # not configured: every round reports it, nothing crashes
                    built[name] = err
            self.providers = built
        self.latest: dict[str, Measurement] = {}
        self._due: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self.rounds = 0
        self.last_round: datetime | None = None
        self.thread: threading.Thread | None = None

    def _measure(self, metric: Metric, now: datetime) -> Measurement:
        assert self.providers is not None
        provider = self.providers[metric.source.provider]
        if isinstance(provider, UserError):
            return Measurement.error(metric.id, now, str(provider))
        return provider.query(metric.source, now, metric=metric.id)

    def collect_once(self, now: datetime | None = None) -> tuple[Measurement, ...]:
        """Measure every metric that is due; returns the new measurements (providers never raise)."""
        now = now or self.clock()
        due = [m for m in self.metrics if self._due.get(m.id, now) <= now]
        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="collect") as pool:
            found = tuple(pool.map(lambda metric: self._measure(metric, now), due))
        with self._lock:
            for metric, measurement in zip(due, found, strict=True):
                self.latest[metric.id] = measurement
                trigger = metric.id in self.trigger_metrics
                self._due[metric.id] = now + period_for(metric, self.interval, trigger=trigger)
                if measurement.phase is not Phase.OK:
                    log.warning("%s: %s: %s", metric.id, measurement.phase.value, measurement.message)
            self.rounds += 1
            self.last_round = now
        return found

    def fresh(self, now: datetime | None = None) -> dict[str, Measurement]:
        """The measurements that may be exported now: phase ok and within the metric's max_age."""
        now = now or self.clock()
        with self._lock:
            latest = dict(self.latest)
        return {
            metric.id: latest[metric.id]
            for metric in self.metrics
            if metric.id in latest
            and latest[metric.id].phase is Phase.OK
            and now - latest[metric.id].observed_at <= metric.source.max_age
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The families ``/metrics`` serves, computed at scrape time (so staleness is judged then)."""
        now = self.clock()
        fresh = self.fresh(now)
        service = self.plan.service
        value = GaugeMetricFamily(
            self.gauge,
            "Fresh measurements of the plan's non-Prometheus metrics, by the controller's providers",
            labels=["metric", "service", "provider"],
        )
        observed = GaugeMetricFamily(
            f"{self.gauge}_observed_timestamp_seconds",
            "When each exported measurement was true",
            labels=["metric", "service"],
        )
        phase = GaugeMetricFamily(
            f"{self.gauge}_phase",
            "1 for each metric's current phase: ok, stale, no_data, error, pending (not measured yet)",
            labels=["metric", "service", "phase"],
        )
        with self._lock:
            latest = dict(self.latest)
        for metric in self.metrics:
            measurement = latest.get(metric.id)
            if metric.id in fresh and measurement is not None:
                value.add_metric([metric.id, service, metric.source.provider], measurement.value or 0.0)
                observed.add_metric([metric.id, service], measurement.observed_at.timestamp())
                state = "ok"
            elif measurement is None:
                state = "pending"
            elif measurement.phase is Phase.OK:
                state = "stale"
            else:
                state = measurement.phase.value
            phase.add_metric([metric.id, service, state], 1.0)
        rounds = GaugeMetricFamily(
            "markethub_rollout_collector_last_round_timestamp_seconds",
            "When the controller's collector last measured",
            labels=["service"],
        )
        if self.last_round is not None:
            rounds.add_metric([service], self.last_round.timestamp())
        yield from (value, observed, phase, rounds)

    def run(self, stop: threading.Event, *, rounds: int | None = None) -> None:
        """Measure until ``stop`` is set (or ``rounds`` ran): a bounded loop, one round per second at
        most, each metric on its own period."""
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            try:
                self.collect_once()
            except Exception:  # one bad round must not end the controller's collection
                log.exception("collector round failed")
            done += 1
            stop.wait(min(self.interval.total_seconds(), 1.0))

    def start(self, stop: threading.Event) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, args=(stop,), name="rollout-collector", daemon=True)
        self.thread.start()
        return self.thread

    def join(self, timeout: float = 10.0) -> None:
        """Wait for the measuring thread to end after ``stop`` is set: ``rollout serve`` does this
        before it exits, so no round runs while the interpreter shuts down."""
        if self.thread is not None:
            self.thread.join(timeout)


def start_collection(
    plan: Plan,
    registry: CollectorRegistry,
    interval: timedelta,
    stop: threading.Event,
    environ: Mapping[str, str] | None = None,
) -> MeasurementCollector:
    """What ``rollout serve`` runs: a collector configured from the ``ROLLOUT_*`` provider variables,
    exported on ``registry`` (the one its ``/metrics`` serves), measuring in a thread until ``stop``."""
    collector = MeasurementCollector(plan, ProviderSettings.from_env(environ), interval=interval)
    registry.register(collector)
    collector.start(stop)
    return collector


__all__ = ["MAX_PERIOD", "MeasurementCollector", "period_for", "start_collection"]
