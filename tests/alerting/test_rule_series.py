"""Every series the generated alert rules read exists in production: the service's own metrics, the
controller's exports, or Prometheus's own; none only because a test rig publishes it.

The rules are generated from the shipped plan for every stage (trigger, missing-data and gate rules).
The service's series are read from a running simulator version's /metrics (it exports what the real
service exports); the controller's from its registry. The live counterpart, against a real
Prometheus, is in ``test_alerting_e2e.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.alerts import AlertsArgs, bridged_metric_ids, gate_rules, missing_data_rules, trigger_rules
from rollout_policies.alerting.collector import MeasurementCollector
from rollout_policies.alerting.receiver import ReceiverMetrics
from rollout_policies.plan.model import Plan
from rollout_policies.providers.settings import ProviderSettings
from simulator.service import ServiceVersion

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan",
}  # fmt: skip
PROMETHEUS_OWN = {"ALERTS", "ALERTS_FOR_STATE", "up"}


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges, grouping and functions
    removed; what is left that is not a keyword or a number is a series name)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()[:1]
        word = match.group()
        if following == "(" or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def _args(plan: Plan, stage_index: int) -> AlertsArgs:
    return AlertsArgs(
        service=plan.service, namespace="markethub", plan=plan, stage=plan.stages[stage_index],
        stack="prod-us-east-1", region="us-east-1",
    )  # fmt: skip


def _all_rules(plan: Plan) -> Iterator[dict[str, object]]:
    yield from trigger_rules(_args(plan, 0))
    yield from missing_data_rules(_args(plan, 0))
    for index in range(len(plan.stages)):
        yield from gate_rules(_args(plan, index))


def _names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples} | {
        family.name for family in text_string_to_metric_families(text)
    }


@pytest.fixture(scope="module")
def service_series() -> set[str]:
    version = ServiceVersion("green", "candidate", seed=1).start()
    try:
        return _names(httpx.get(f"{version.url}/metrics", timeout=5).text)
    finally:
        version.stop()


@pytest.fixture(scope="module")
def controller_series(plan: Plan) -> set[str]:
    metrics = ReceiverMetrics()
    collector = MeasurementCollector(plan, ProviderSettings())
    metrics.registry.register(collector)
    families = {family.name for family in collector.collect()}
    return families | _names(generate_latest(metrics.registry).decode())


def test_the_series_name_parser_finds_names_and_skips_functions_labels_and_keywords() -> None:
    expr = 'absent(100 * sum by (track) (rate(x_total{code=~"5..",a="b(c)"}[1m])) / on(track) y or vector(0))'
    assert series_names(expr) == {"x_total", "y"}


def test_the_trigger_rules_read_only_what_the_service_and_the_controller_export(
    plan: Plan, service_series: set[str], controller_series: set[str]
) -> None:
    rules = [*trigger_rules(_args(plan, 0)), *missing_data_rules(_args(plan, 0))]
    read = {name for rule in rules for name in series_names(str(rule["expr"]))}
    assert read <= service_series | controller_series | PROMETHEUS_OWN, (
        read - service_series - controller_series
    )
    assert "markethub_rollout_measurement" in read  # crash rate and load balancer: the controller's
    assert {"http_server_requests_total", "markethub_db_connection_up"} <= read  # the service's own


def test_no_rule_reads_a_series_only_the_rig_publishes(plan: Plan, service_series: set[str]) -> None:
    from simulator.traffic import FixedSplit, Users

    users = Users({"green": "http://127.0.0.1:9"}, FixedSplit())
    rig_only = _names(generate_latest(users.registry).decode()) | {
        "markethub_lb_unhealthy_hosts",  # what the simulator's load balancer once exported to Prometheus
    }
    read = {name for rule in _all_rules(plan) for name in series_names(str(rule["expr"]))}
    assert read and not read & rig_only


def test_the_controller_exports_every_metric_a_rule_reads_through_its_gauge(plan: Plan) -> None:
    through_gauge = {
        match
        for rule in _all_rules(plan)
        for match in re.findall(r'markethub_rollout_measurement\{metric="([^"]+)"', str(rule["expr"]))
    }
    collector = MeasurementCollector(plan, ProviderSettings())
    assert through_gauge == {metric.id for metric in collector.metrics} == set(bridged_metric_ids(plan))
    assert {"crash_rate", "lb_unhealthy_hosts"} <= through_gauge
