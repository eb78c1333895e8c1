"""RollbackAlerts: PrometheusRules from the plan's triggers and thresholds, their route, the dashboard."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
from infra_helpers import rollout, settings
from pulumi_render import deploy
from ruamel.yaml import YAML

from infra.alerts import AlertsArgs, trigger_rule_manifest
from infra.settings import Alerts

SERVICE = "markethub-mobile"
PROMTOOL = shutil.which("promtool")


def _rules(deployed, name):
    return {r["alert"]: r for r in deployed.one("PrometheusRule", name)["spec"]["groups"][0]["rules"]}


def _trigger_rules(deployed):
    """The rollback rules of the trigger PrometheusRule (without their missing-data companions)."""
    rules = _rules(deployed, f"{SERVICE}-rollback-triggers")
    return {name: rule for name, rule in rules.items() if rule["labels"]["rollout_action"] == "rollback"}


def test_each_trigger_fires_its_detection_budget_before_its_window_ends(plan):
    rules = _trigger_rules(deploy(settings(), plan))
    assert {name: rule["for"] for name, rule in rules.items()} == {
        "RollbackCrashRate": "220s",
        "RollbackApiErrorRate": "40s",
        "RollbackLoadBalancerFailures": "0s",
        "RollbackDatabaseConnectionLoss": "0s",
    }


def test_the_plan_window_stays_on_each_trigger_rule(plan):
    rules = _trigger_rules(deploy(settings(), plan))
    assert {name: rule["annotations"]["window"] for name, rule in rules.items()} == {
        "RollbackCrashRate": "5m",
        "RollbackApiErrorRate": "2m",
        "RollbackLoadBalancerFailures": "1m",
        "RollbackDatabaseConnectionLoss": "0s",
    }


def test_a_trigger_compares_its_prometheus_query_with_the_threshold(plan):
    rule = _rules(deploy(settings(), plan), f"{SERVICE}-rollback-triggers")["RollbackDatabaseConnectionLoss"]
    assert rule["expr"] == "(min(markethub_db_connection_up)) < 1"


def test_a_trigger_from_another_provider_reads_the_bridge_gauge(plan):
    rule = _rules(deploy(settings(), plan), f"{SERVICE}-rollback-triggers")["RollbackLoadBalancerFailures"]
    assert rule["expr"] == (
        '(max(markethub_rollout_measurement{metric="lb_unhealthy_hosts",service="markethub-mobile"})) > 0'
    )


def test_every_trigger_has_a_missing_data_rule_that_notifies(plan):
    rules = _rules(deploy(settings(), plan), f"{SERVICE}-rollback-triggers")
    missing = {name: rule for name, rule in rules.items() if rule["labels"]["rollout_action"] == "alert"}
    assert {name: rule["for"] for name, rule in missing.items()} == {
        "RollbackDataMissingCrashRate": "220s",
        "RollbackDataMissingApiErrorRate": "2m",
        "RollbackDataMissingLoadBalancerFailures": "2m",
        "RollbackDataMissingDatabaseConnectionLoss": "2m",
    }
    for trigger_rule in _trigger_rules(deploy(settings(), plan)).values():
        twin = missing[trigger_rule["alert"].replace("Rollback", "RollbackDataMissing", 1)]
        query = trigger_rule["expr"].rsplit(") ", 1)[0][1:]  # "(<query>) > 5" -> "<query>"
        assert twin["expr"] == f"absent({query})"
        assert twin["labels"]["rollout_trigger"] == trigger_rule["labels"]["rollout_trigger"]
        assert (twin["labels"]["severity"], twin["labels"]["rollout_reason"]) == ("warning", "missing-data")


def test_trigger_alerts_carry_the_labels_the_webhook_routes_on(plan):
    rule = _rules(deploy(settings(), plan), f"{SERVICE}-rollback-triggers")["RollbackCrashRate"]
    assert rule["labels"] == {
        "namespace": "markethub",
        "rollout_service": SERVICE,
        "rollout_stack": "prod-us-east-1",
        "rollout_region": "us-east-1",
        "severity": "critical",
        "rollout_action": "rollback",
        "rollout_trigger": "crash-rate",
        "rollout_metric": "crash_rate",
    }


def test_gate_alerts_follow_the_stage_alert_thresholds_and_skip_monitor_only_rows(plan):
    rules = _rules(deploy(settings(state=rollout("medium", 0, 30)), plan), f"{SERVICE}-stage-alerts")
    rules = {name: rule for name, rule in rules.items() if name.startswith("GateAlert")}
    assert {name: rule["expr"].rsplit(") ", 1)[1] for name, rule in rules.items()} == {
        "GateAlertCrashRate": "> 2",
        "GateAlertApiErrorRate": "> 1",
        "GateAlertSearchSuccess": "< 75",
    }
    assert rules["GateAlertSearchSuccess"]["labels"]["rollout_stage"] == "medium"


def test_every_gate_alert_has_a_missing_data_twin_that_tells_people(plan):
    rules = _rules(deploy(settings(state=rollout("medium", 0, 30)), plan), f"{SERVICE}-stage-alerts")
    alerts = {name: rule for name, rule in rules.items() if name.startswith("GateAlert")}
    missing = {name: rule for name, rule in rules.items() if name.startswith("GateDataMissing")}
    assert len(missing) == len(alerts) == 3
    for name, alert in alerts.items():
        twin = missing[name.replace("GateAlert", "GateDataMissing", 1)]
        query = alert["expr"].rsplit(") ", 1)[0][1:]  # "(<query>) > 2" -> "<query>"
        assert twin["expr"] == f"absent({query})"
        assert twin["for"] == "5m"  # the gate's own `for`, longer than alerts.missingDataFor (2m)
        assert twin["labels"]["rollout_action"] == "alert"  # the notification receiver, never a rollback
        assert (twin["labels"]["rollout_reason"], twin["labels"]["rollout_metric"]) == (
            "missing-data",
            alert["labels"]["rollout_metric"],
        )


def test_rules_carry_the_labels_the_prometheus_operator_selects(plan):
    rule = deploy(settings(alerts={"ruleLabels": {"prometheus": "ops"}}), plan).one(
        "PrometheusRule", f"{SERVICE}-rollback-triggers"
    )
    assert rule["metadata"]["labels"]["prometheus"] == "ops"


def _dashboard(deployed) -> dict:
    config_map = deployed.one("ConfigMap", f"{SERVICE}-rollout-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(config_map["data"][f"{SERVICE}-rollout.json"])


def test_dashboard_is_a_grafana_sidecar_config_map_with_the_current_stage(plan):
    panels = _dashboard(deploy(settings(state=rollout("limited", 1, 5)), plan))["panels"]
    assert panels[0]["title"] == "Stage"
    assert "Limited Release (`limited`)" in panels[0]["options"]["content"]
    assert "2% → 5% → 10%" in panels[0]["options"]["content"]


def test_dashboard_shows_the_live_split_by_colour(plan):
    panels = _dashboard(deploy(settings(alerts={"trafficQuery": "sum by (colour) (rate(x[1m]))"}), plan))[
        "panels"
    ]
    assert panels[1]["targets"][0]["expr"] == "sum by (colour) (rate(x[1m]))"


def test_the_default_traffic_panel_reads_the_series_the_service_exports(plan):
    """The split panel's default query names the request counter, and the labels, that the service
    exports (the simulator's version of it, serving one real request on loopback)."""
    from prometheus_client.parser import text_string_to_metric_families

    from simulator.service import ENDPOINTS, ServiceVersion

    expr = _dashboard(deploy(settings(), plan))["panels"][1]["targets"][0]["expr"]
    version = ServiceVersion("green", "candidate", seed=1).start()
    try:
        endpoint = next(path for path, method in ENDPOINTS.items() if method == "GET")
        with contextlib.suppress(urllib.error.HTTPError):  # an error answer is counted too
            urllib.request.urlopen(f"{version.url}{endpoint}", timeout=5).read()
        scraped = urllib.request.urlopen(f"{version.url}/metrics", timeout=5).read().decode()
    finally:
        version.stop()
    samples = [s for family in text_string_to_metric_families(scraped) for s in family.samples]
    counter = re.search(r"rate\((\w+)\{", expr).group(1)
    by = re.search(r"by \((\w+)\)", expr).group(1)
    served = [s for s in samples if s.name == counter and s.labels.get("service") == SERVICE]
    assert served and all(by in s.labels for s in served), (expr, sorted({s.name for s in samples}))


def test_dashboard_draws_each_gate_against_its_target_and_alert(plan):
    panels = {p["title"]: p for p in _dashboard(deploy(settings(), plan))["panels"]}
    crash = panels["Crash Rate  target < 1  alert > 2"]
    assert crash["fieldConfig"]["defaults"]["thresholds"]["steps"] == [
        {"color": "green", "value": None},
        {"color": "yellow", "value": 1},
        {"color": "red", "value": 2},
    ]
    search = panels["Search Success  target > 85  alert < 75"]
    assert [s["color"] for s in search["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        "red",
        "yellow",
        "green",
    ]


def _rule_file(tmp_path, manifest) -> str:
    path = tmp_path / "rules.yaml"
    YAML(typ="safe", pure=True).dump({"groups": manifest["spec"]["groups"]}, path)
    return str(path)


@pytest.mark.services
@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_accepts_the_rules_generated_from_the_shipped_plan(tmp_path):
    from infra.program import load_plan_file, resolve_plan_path

    shipped = load_plan_file(resolve_plan_path("rollout_policies/plans/markethub-mobile.yaml"))
    args = AlertsArgs(
        service=shipped.service, namespace="m", plan=shipped, stage=shipped.stages[0], stack="s", region="r"
    )
    result = subprocess.run(
        [PROMTOOL, "check", "rules", _rule_file(tmp_path, trigger_rule_manifest(args))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.services
@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")
def test_prometheus_fires_a_trigger_after_its_for_duration_inside_its_window(plan, tmp_path):
    args = AlertsArgs(
        service=SERVICE,
        namespace="m",
        plan=plan,
        stage=plan.stages[0],
        stack="prod",
        region="r",
        alerts=Alerts(),
    )
    rules = _rule_file(tmp_path, trigger_rule_manifest(args))
    labels = {
        "namespace": "m",
        "rollout_service": SERVICE,
        "rollout_stack": "prod",
        "rollout_region": "r",
        "severity": "critical",
        "rollout_action": "rollback",
        "rollout_trigger": "crash-rate",
        "rollout_metric": "crash_rate",
    }
    tests = {
        "rule_files": [rules],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                # Healthy for a minute, then a 10% crash rate (the trigger: > 5%) from t=60s on.
                "input_series": [
                    {
                        "series": f'markethub_rollout_measurement{{metric="crash_rate",service="{SERVICE}"}}',
                        "values": "0 0 10 10 10 10 10 10 10 10 10 10 10",
                    }
                ],
                "alert_rule_test": [
                    # Pending from 60s; held 210s < its 220s `for:` at 270s; held 240s at 300s: firing,
                    # inside the 5m window (360s), with the detection budget's 80s left for the rest.
                    {"eval_time": "270s", "alertname": "RollbackCrashRate", "exp_alerts": []},
                    {
                        "eval_time": "300s",
                        "alertname": "RollbackCrashRate",
                        "exp_alerts": [
                            {
                                "exp_labels": labels,
                                "exp_annotations": {
                                    "summary": "Crash Rate > 5%",
                                    "threshold": "> 5",
                                    "window": "5m",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "test.yaml"
    YAML(typ="safe", pure=True).dump(tests, test_file)
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
