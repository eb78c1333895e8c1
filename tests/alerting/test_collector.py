"""The controller's collector: non-Prometheus rule metrics measured by their providers, exported fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.alerts import bridged_metric_ids
from rollout_policies.alerting.collector import MAX_PERIOD, MeasurementCollector, period_for
from rollout_policies.core.measurement import Measurement
from rollout_policies.errors import UserError
from rollout_policies.plan.model import MetricSource, Plan
from rollout_policies.providers.settings import ProviderSettings

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Scripted:
    """A provider whose answers the test sets per metric; it counts the queries it gets."""

    name = "scripted"

    def __init__(self) -> None:
        self.answers: dict[str, Measurement] = {}
        self.asked: list[str] = []

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        self.asked.append(metric)
        return self.answers.get(metric) or Measurement.no_data(metric, now, "scripted: nothing set")

    def is_online(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _collector(plan: Plan, provider: Scripted, clock: Clock) -> MeasurementCollector:
    names = {plan.metric(m).source.provider for m in bridged_metric_ids(plan)}
    return MeasurementCollector(
        plan,
        ProviderSettings(),
        interval=timedelta(seconds=15),
        clock=clock,
        providers=dict.fromkeys(names, provider),
    )


def _exported(collector: MeasurementCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(found, metric: str, provider: str) -> float | None:
    key = (
        "markethub_rollout_measurement",
        (("metric", metric), ("provider", provider), ("service", "markethub-mobile")),
    )
    return found.get(key)


def _phase(found, metric: str) -> str:
    (phase,) = [
        dict(labels)["phase"]
        for (name, labels), value in found.items()
        if name == "markethub_rollout_measurement_phase" and dict(labels)["metric"] == metric and value == 1
    ]
    return phase


def test_it_measures_exactly_the_metrics_the_rules_read_through_the_gauge(plan: Plan) -> None:
    provider, clock = Scripted(), Clock()
    collector = _collector(plan, provider, clock)
    collector.collect_once()
    assert sorted(provider.asked) == sorted(bridged_metric_ids(plan))
    assert {"crash_rate", "lb_unhealthy_hosts"} <= set(provider.asked)
    assert not {"api_error_rate", "db_connected"} & set(provider.asked)  # Prometheus reads those itself


def test_a_fresh_measurement_is_exported_and_a_failed_one_removes_the_series(plan: Plan) -> None:
    provider, clock = Scripted(), Clock()
    collector = _collector(plan, provider, clock)
    provider.answers["crash_rate"] = Measurement.ok("crash_rate", 7.5, NOW)
    collector.collect_once()
    found = _exported(collector)
    assert _value(found, "crash_rate", "json_http") == 7.5
    assert _phase(found, "crash_rate") == "ok"
    assert _value(found, "lb_unhealthy_hosts", "cloudwatch") is None
    assert _phase(found, "lb_unhealthy_hosts") == "no_data"

    clock.now = NOW + timedelta(seconds=30)
    provider.answers["crash_rate"] = Measurement.error("crash_rate", clock.now, "json_http: HTTP 503")
    collector.collect_once()
    found = _exported(collector)
    assert _value(found, "crash_rate", "json_http") is None  # the absent() rule notifies, no old value
    assert _phase(found, "crash_rate") == "error"


def test_a_value_older_than_its_max_age_is_not_exported(plan: Plan) -> None:
    provider, clock = Scripted(), Clock()
    collector = _collector(plan, provider, clock)
    provider.answers["crash_rate"] = Measurement.ok("crash_rate", 1.0, NOW)
    collector.collect_once()
    clock.now = NOW + plan.metric("crash_rate").source.max_age + timedelta(seconds=1)
    found = _exported(collector)  # judged at scrape time: the collector may be stuck on a slow provider
    assert _value(found, "crash_rate", "json_http") is None
    assert _phase(found, "crash_rate") == "stale"


def test_each_metric_is_measured_on_its_own_period(plan: Plan) -> None:
    provider, clock = Scripted(), Clock()
    collector = _collector(plan, provider, clock)
    collector.collect_once()
    provider.asked.clear()
    clock.now = NOW + timedelta(seconds=31)
    collector.collect_once()
    assert "crash_rate" in provider.asked  # a trigger: every interval
    assert "session_duration" not in provider.asked  # a gate, max_age 1d: every 10 minutes
    assert period_for(plan.metric("session_duration"), timedelta(seconds=15)) == MAX_PERIOD
    assert period_for(plan.metric("nps"), timedelta(seconds=15)) == MAX_PERIOD  # 7d
    assert period_for(plan.metric("crash_rate"), timedelta(seconds=15), trigger=True) == timedelta(seconds=15)


def test_an_unconfigured_provider_is_an_error_phase_not_a_crash(plan: Plan) -> None:
    collector = MeasurementCollector(plan, ProviderSettings(), interval=timedelta(seconds=15), clock=Clock())
    collector.collect_once()
    found = _exported(collector)
    assert _phase(found, "crash_rate") == "error"  # no crash_reporter base URL
    assert "no base URL named 'crash_reporter'" in collector.latest["crash_rate"].message


def test_bad_provider_variables_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="ROLLOUT_JSON_BASE_URLS: 'crash_reporter' is not name=url"):
        ProviderSettings.from_env({"ROLLOUT_JSON_BASE_URLS": "crash_reporter"})
