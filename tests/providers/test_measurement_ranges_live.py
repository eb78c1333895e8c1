"""Impossible readings from live providers hold: real Prometheus and PostgreSQL (Debian) behind ``collect``.

The shipped plan's beta stage is measured through ``collect`` (the step every live provider goes
through) with each metric's source pointed at a real backend: Prometheus scraping an exporter whose
gauges hold the readings, or PostgreSQL answering a query. Every metric reads a value that meets its
target except the one a row breaks; the row expects the measurement ``collect`` returns and the
decision's one-line reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollout_policies.core import Action, Evidence, Measurement, Phase, decide
from rollout_policies.plan import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import CriterionKind, Direction, MetricSource, Plan
from rollout_policies.providers.collect import collect, metrics_for_stage
from rollout_policies.providers.prometheus import PrometheusProvider
from rollout_policies.providers.settings import ProviderSettings

SHIPPED = load_plan(DEFAULT_PLAN)
STAGE_ID = "beta"
GAUGE = "rollout_range_test_value"
SQL_METRICS = ("session_duration", "screen_drop_off")  # already SQL in the shipped plan


def good_value(plan: Plan, metric_id: str) -> float:
    """The good end of the metric's range (or one past its thresholds when the range is open)."""
    stage = plan.stage(STAGE_ID)
    metric = plan.metric(metric_id)
    bound = [
        t.value
        for t in (
            *(x for g in stage.gates if g.metric == metric_id for x in (g.target, g.alert)),
            *(c.threshold for c in (*stage.go, *stage.no_go) if c.metric == metric_id),
            *(t.threshold for t in plan.triggers if t.metric == metric_id),
        )
        if t is not None
    ]
    valid = metric.valid_range
    if metric.direction is Direction.HIGHER_IS_BETTER:
        return valid.max if valid.max is not None else max(bound) + 1
    return valid.min if valid.min is not None else min(bound) - 1


STAGE_METRICS = metrics_for_stage(SHIPPED, SHIPPED.stage(STAGE_ID))
GOOD = {metric_id: good_value(SHIPPED, metric_id) for metric_id in STAGE_METRICS}


def sql_query(value: float) -> str:
    return f"SELECT {value!r}::float8, %(now)s::timestamptz"


def live_plan(sql_values: dict[str, float]) -> Plan:
    """The shipped plan with the stage's metrics read live: SQL for two, Prometheus for the rest."""
    metrics = []
    for metric in SHIPPED.metrics:
        if metric.id in SQL_METRICS:
            source = MetricSource(
                provider="sql", query=sql_query(sql_values[metric.id]), max_age=metric.source.max_age
            )
        elif metric.id in GOOD:
            query = f'max({GAUGE}{{metric="{metric.id}"}})'
            source = MetricSource(provider="prometheus", query=query, max_age=metric.source.max_age)
        else:
            continue
        metrics.append(metric.model_copy(update={"source": source}))
    others = tuple(m for m in SHIPPED.metrics if m.id not in GOOD)
    return SHIPPED.model_copy(update={"metrics": (*metrics, *others)})


@pytest.fixture(scope="module")
def live(exporter_factory: Any, prometheus_factory: Any, postgres: Any) -> Iterator[Any]:
    exporter = exporter_factory()
    for metric_id, value in GOOD.items():
        exporter.set(GAUGE, value, metric=metric_id)
    prometheus = prometheus_factory(scrape_targets=[exporter.target])
    settings = ProviderSettings(prometheus_url=prometheus.url, sql_dsn=postgres.dsn)
    wait_scraped(settings, "crash_rate", GOOD["crash_rate"])  # one scrape carries every gauge
    yield exporter, settings


def wait_scraped(settings: ProviderSettings, metric_id: str, value: float, timeout: float = 20.0) -> None:
    """Wait until Prometheus has scraped the gauge (a readiness wait, not an assertion)."""
    plan = live_plan({m: GOOD[m] for m in SQL_METRICS})
    source = plan.metric(metric_id).source
    provider = PrometheusProvider(url=settings.prometheus_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = provider.query(source, datetime.now(UTC), metric=metric_id)
        if seen.value == value or (
            math.isnan(value) and seen.phase is Phase.NO_DATA and "nan" in seen.message
        ):
            return
        if math.isinf(value) and seen.phase is Phase.NO_DATA and "inf" in seen.message:
            return
        time.sleep(0.2)


@dataclass(frozen=True)
class Row:
    name: str
    metric: str
    value: float
    phase: Phase
    message: str  # the measurement collect returns for the metric
    reason: str  # one of the decision's reasons, exactly


PCT = "within 0..100 (a percentage)"
ROWS = [
    Row(
        "crash rate -5%",
        "crash_rate",
        -5,
        Phase.ERROR,
        f"-5 % is out of range: crash_rate is always {PCT}",
        f"crash_rate: source error: -5 % is out of range: crash_rate is always {PCT}",
    ),
    Row(
        "success rate 250%",
        "search_success",
        250,
        Phase.ERROR,
        f"250 % is out of range: search_success is always {PCT}",
        f"search_success: source error: 250 % is out of range: search_success is always {PCT}",
    ),
    Row(
        "critical bugs -100",
        "critical_bugs",
        -100,
        Phase.ERROR,
        "-100 bugs is out of range: critical_bugs is always >= 0 (a count)",
        "beta-critical-bugs: <5 critical bugs reported: critical_bugs: source error: "
        "-100 bugs is out of range: critical_bugs is always >= 0 (a count)",
    ),
    Row(
        "battery drain -1e308",
        "battery_impact",
        -1e308,
        Phase.ERROR,
        "-1e+308 %/hr is out of range: battery_impact is always >= 0 (a rate)",
        "battery_impact: source error: -1e+308 %/hr is out of range: battery_impact is always >= 0 (a rate)",
    ),
    Row(
        "NPS 11 of 10",
        "nps",
        11,
        Phase.ERROR,
        "11 score is out of range: nps is always within 0..10 (the plan's range)",
        "nps: source error: 11 score is out of range: nps is always within 0..10 (the plan's range)",
    ),
    Row(
        "database connected 1.5 of 1",
        "db_connected",
        1.5,
        Phase.ERROR,
        "1.5 ratio is out of range: db_connected is always within 0..1 (the plan's range)",
        "database-connection-loss: Database Connection Loss: newest measurement of db_connected failed: "
        "1.5 ratio is out of range: db_connected is always within 0..1 (the plan's range)",
    ),
    Row(
        "unhealthy hosts -1",
        "lb_unhealthy_hosts",
        -1,
        Phase.ERROR,
        "-1 hosts is out of range: lb_unhealthy_hosts is always >= 0 (a count)",
        "load-balancer-failures: Load Balancer Failures: newest measurement of lb_unhealthy_hosts failed: "
        "-1 hosts is out of range: lb_unhealthy_hosts is always >= 0 (a count)",
    ),
    Row(
        "memory -1 MB",
        "memory_usage",
        -1,
        Phase.ERROR,
        "-1 MB is out of range: memory_usage is always >= 0 (a size)",
        "memory_usage: source error: -1 MB is out of range: memory_usage is always >= 0 (a size)",
    ),
    Row(
        "crash rate NaN",
        "crash_rate",
        math.nan,
        Phase.NO_DATA,
        "prometheus: the value is nan (not a number)",
        "crash_rate: source returned no data: prometheus: the value is nan (not a number)",
    ),
    Row(
        "API error rate +Inf",
        "api_error_rate",
        math.inf,
        Phase.NO_DATA,
        "prometheus: the value is inf (not a number)",
        "api-error-rate: API Error Rate > 10%: no fresh measurement of api_error_rate (max age 2m)",
    ),
    Row(
        "load time -Inf",
        "app_load_time",
        -math.inf,
        Phase.NO_DATA,
        "prometheus: the value is -inf (not a number)",
        "app_load_time: source returned no data: prometheus: the value is -inf (not a number)",
    ),
    Row(
        "SQL session -5 minutes",
        "session_duration",
        -5,
        Phase.ERROR,
        "-5 min is out of range: session_duration is always >= 0 (a duration)",
        "session_duration: source error: "
        "-5 min is out of range: session_duration is always >= 0 (a duration)",
    ),
    Row(
        "SQL drop-off 101%",
        "screen_drop_off",
        101,
        Phase.ERROR,
        f"101 % is out of range: screen_drop_off is always {PCT}",
        f"screen_drop_off: source error: 101 % is out of range: screen_drop_off is always {PCT}",
    ),
]


def measure_and_decide(
    settings: ProviderSettings, sql_values: dict[str, float]
) -> tuple[dict[str, Measurement], Any]:
    plan = live_plan(sql_values)
    now = datetime.now(UTC)
    measured = collect(plan, STAGE_ID, now, settings)
    stage = plan.stage(STAGE_ID)
    signoffs = [c.id for c in (*stage.go, *stage.no_go) if c.kind is CriterionKind.MANUAL]
    started = now - stage.min_duration - timedelta(days=1)
    decision = decide(
        plan,
        STAGE_ID,
        len(stage.steps) - 1,
        Evidence.of(measured, signoffs),
        now=now,
        stage_started_at=started,
        step_started_at=started,
    )
    return {m.metric: m for m in measured}, decision


def test_good_readings_promote(live: Any) -> None:
    """The baseline: with every reading good, live, the stage promotes."""
    _, settings = live
    measured, decision = measure_and_decide(settings, {m: GOOD[m] for m in SQL_METRICS})
    assert {m.phase for m in measured.values()} == {Phase.OK}, measured
    assert decision.action is Action.PROMOTE, decision.reasons


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_impossible_live_reading_holds(live: Any, row: Row) -> None:
    exporter, settings = live
    sql_values = {m: GOOD[m] for m in SQL_METRICS}
    if row.metric in SQL_METRICS:
        sql_values[row.metric] = row.value
    else:
        exporter.set(GAUGE, row.value, metric=row.metric)
        wait_scraped(settings, row.metric, row.value)
    try:
        measured, decision = measure_and_decide(settings, sql_values)
    finally:
        if row.metric not in SQL_METRICS:
            exporter.set(GAUGE, GOOD[row.metric], metric=row.metric)
            wait_scraped(settings, row.metric, GOOD[row.metric])
    reading = measured[row.metric]
    assert (reading.phase, reading.message) == (row.phase, row.message)
    assert decision.action is Action.HOLD
    assert row.reason in [str(reason) for reason in decision.reasons], [str(r) for r in decision.reasons]
