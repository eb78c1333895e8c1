"""RollbackAlerts: PrometheusRules from the plan's rollback triggers and alert thresholds, routed to
the tool's webhook, and a Grafana dashboard of the stage's metrics against their thresholds.

Two rule objects, so each changes only when it must: the trigger rules are plan-wide (a promotion
never touches them); the gate alerts follow the current stage's tables. The plan says "roll back
within" a window ("crash rate > 5%: auto-rollback in 5 minutes"; "immediately"), so a trigger's
``for:`` is its window less the detection budget (``alerts.detectionBudget``, 80s: the rule group's
30s evaluation interval, a 30s scrape, and 20s for the webhook, commit and apply), never below
``0s``: the rollback is live within the window, not one evaluation and one apply after it. A metric whose
source is Prometheus is watched with its own query. A metric from another provider (CloudWatch, SQL,
a JSON API) is watched through the gauge ``markethub_rollout_measurement{metric, service}``
(``alerts.bridgeMetric``), which the controller (``rollout serve``) exports: it measures those
metrics with the same providers ``rollout evaluate`` uses, on an interval
(``rollout_policies.alerting.collector``). Manual metrics get no rule (``unruled`` output).

Missing data is never silence: for every trigger a second rule, ``absent(<its query>)``, fires when
the trigger's data is gone (the controller down, a provider failing or stale, a series renamed) for
the trigger's ``for:`` or ``alerts.missingDataFor`` (2m), whichever is longer, and notifies as a
gate alert does (``rollout_action: alert``): a trigger that cannot see cannot roll back.

The dashboard shows the live traffic split from a PromQL query rather than the configured weights,
so a step (a weight change) updates the route alone; the stage, its planned steps and its
thresholds are written into the dashboard and change with the stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pulumi

from infra import kube, naming
from infra.alert_route import RouteArgs, alertmanager_config_manifest
from infra.controller import webhook_url
from infra.kube import Manifest
from infra.settings import Alerts
from rollout_policies.plan.model import (
    Direction,
    Gate,
    Metric,
    Plan,
    Stage,
    Threshold,
    format_duration,
    parse_duration,
)

COMPONENT = "alerts"
PROMETHEUS = "prometheus"
MANUAL = "manual"
DASHBOARD_LABEL = "grafana_dashboard"
GATE_FOR = "5m"  # an alert threshold must hold this long before it pages: one scrape blip is noise


@dataclass(frozen=True)
class AlertsArgs:
    service: str
    namespace: str
    plan: Plan
    stage: Stage
    stack: str
    region: str
    alerts: Alerts = field(default_factory=Alerts)
    # The Secrets the route's receivers read (the controller's settings name them).
    webhook_secret: str = "rollout-webhook"
    notify_secret: str = "rollout-notify"


def prometheus_duration(value: Any) -> str:
    """A plan duration as Prometheus writes it: ``5m``, ``1h``, ``0s`` for "immediately"."""
    return format_duration(value)


def trigger_for(args: AlertsArgs, window: timedelta) -> timedelta:
    """How long a trigger's condition must hold before its rule fires (see the module doc)."""
    return max(timedelta(0), window - parse_duration(args.alerts.detection_budget))


def _camel(identifier: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in identifier.replace("-", "_").split("_") if part)


def metric_query(args: AlertsArgs, metric: Metric) -> str | None:
    """The PromQL giving ``metric``: its own query when Prometheus is its source; otherwise the
    bridge gauge that carries other providers' measurements into Prometheus (see the module doc);
    ``None`` for metrics a person reports (manual)."""
    if metric.source.provider == PROMETHEUS and metric.source.query.strip():
        return metric.source.query.strip()
    if metric.source.provider == MANUAL:
        return None
    return f'max({args.alerts.bridge_metric}{{metric="{metric.id}",service="{args.service}"}})'


def bridged_metric_ids(plan: Plan) -> tuple[str, ...]:
    """Every metric some rule reads through the gauge, in any stage: what the controller exports."""
    watched = [t.metric for t in plan.triggers]
    watched += [g.metric for stage in plan.stages for g in stage.gates if _alertable(g)]
    return tuple(
        metric
        for metric in dict.fromkeys(watched)
        if plan.metric(metric).source.provider not in (PROMETHEUS, MANUAL)
    )


def _expr(args: AlertsArgs, metric: Metric, threshold: Threshold) -> str | None:
    query = metric_query(args, metric)
    return None if query is None else f"({query}) {threshold.op.value} {threshold.value:g}"


def routing_labels(args: AlertsArgs) -> dict[str, str]:
    """Labels on every alert: the AlertmanagerConfig routes on them, and ``rollout serve`` reads them.

    ``namespace`` is the one the prometheus-operator's default AlertmanagerConfig matcher requires
    (``OnNamespace``): without it no alert reaches the route.
    """
    return {
        "namespace": args.namespace,
        "rollout_service": args.service,
        "rollout_stack": args.stack,
        "rollout_region": args.region,
    }


def trigger_rules(args: AlertsArgs) -> list[Manifest]:
    rules = []
    for trigger in args.plan.triggers:
        expr = _expr(args, args.plan.metric(trigger.metric), trigger.threshold)
        if expr is None:
            continue
        rules.append(
            {
                "alert": f"Rollback{_camel(trigger.id)}",
                "expr": expr,
                "for": prometheus_duration(trigger_for(args, trigger.window)),
                "labels": {
                    **routing_labels(args),
                    "severity": "critical",
                    "rollout_action": "rollback",
                    "rollout_trigger": trigger.id,
                    "rollout_metric": trigger.metric,
                },
                "annotations": {
                    "summary": trigger.text,
                    "threshold": str(trigger.threshold),
                    "window": prometheus_duration(trigger.window),
                },
            }
        )
    return rules


def missing_data_rules(args: AlertsArgs) -> list[Manifest]:
    """One ``absent()`` rule per trigger: it notifies (never rolls back) when the trigger is blind."""
    rules = []
    floor = parse_duration(args.alerts.missing_data_for)
    for trigger in args.plan.triggers:
        metric = args.plan.metric(trigger.metric)
        query = metric_query(args, metric)
        if query is None:
            continue
        source = (
            "its Prometheus series"
            if metric.source.provider == PROMETHEUS
            else f"the controller's {args.alerts.bridge_metric} (from {metric.source.provider})"
        )
        rules.append(
            {
                "alert": f"RollbackDataMissing{_camel(trigger.id)}",
                "expr": f"absent({query})",
                "for": prometheus_duration(max(trigger_for(args, trigger.window), floor)),
                "labels": {
                    **routing_labels(args),
                    "severity": "warning",
                    "rollout_action": "alert",
                    "rollout_reason": "missing-data",
                    "rollout_trigger": trigger.id,
                    "rollout_metric": trigger.metric,
                },
                "annotations": {
                    "summary": f"No data for the rollback trigger {trigger.text!r}: it cannot fire",
                    "description": f"{metric.name} ({metric.id}) has no value in {source}",
                },
            }
        )
    return rules


def _alertable(gate: Gate) -> bool:
    return gate.alert is not None and not gate.monitor_only


def gate_rules(args: AlertsArgs) -> list[Manifest]:
    rules = []
    for gate in args.stage.gates:
        if not _alertable(gate) or gate.alert is None:
            continue
        metric = args.plan.metric(gate.metric)
        expr = _expr(args, metric, gate.alert)
        if expr is None:
            continue
        rules.append(
            {
                "alert": f"GateAlert{_camel(gate.metric)}",
                "expr": expr,
                "for": GATE_FOR,
                "labels": {
                    **routing_labels(args),
                    "severity": "warning",
                    "rollout_action": "alert",
                    "rollout_stage": args.stage.id,
                    "rollout_metric": gate.metric,
                },
                "annotations": {
                    "summary": f"{metric.name} beyond its alert threshold ({gate.alert})"
                    f" at stage {args.stage.id}",
                    "threshold": str(gate.alert),
                    "target": str(gate.target) if gate.target else "",
                },
            }
        )
        rules.append(gate_missing_data_rule(args, gate, metric))
    return rules


def gate_missing_data_rule(args: AlertsArgs, gate: Gate, metric: Metric) -> Manifest:
    """A gate alert is blind without its data (a provider erroring, a source gone quiet): this rule
    says so, to people, after the gate's ``for`` or ``alerts.missingDataFor``, whichever is longer."""
    query = metric_query(args, metric)
    source = (
        "its Prometheus series"
        if metric.source.provider == PROMETHEUS
        else f"the controller's {args.alerts.bridge_metric} (from {metric.source.provider})"
    )
    wait = max(parse_duration(GATE_FOR), parse_duration(args.alerts.missing_data_for))
    return {
        "alert": f"GateDataMissing{_camel(gate.metric)}",
        "expr": f"absent({query})",
        "for": prometheus_duration(wait),
        "labels": {
            **routing_labels(args),
            "severity": "warning",
            "rollout_action": "alert",
            "rollout_reason": "missing-data",
            "rollout_stage": args.stage.id,
            "rollout_metric": gate.metric,
        },
        "annotations": {
            "summary": f"No data for the gate {metric.name} at stage {args.stage.id}: its alert cannot fire",
            "description": f"{metric.name} ({metric.id}) has no value in {source}",
        },
    }


def _watched(args: AlertsArgs) -> list[str]:
    return [t.metric for t in args.plan.triggers] + [g.metric for g in args.stage.gates if _alertable(g)]


def unruled_metrics(args: AlertsArgs) -> list[str]:
    """Trigger and gate metrics no rule can watch: a person reports them (manual source)."""
    return sorted({m for m in _watched(args) if metric_query(args, args.plan.metric(m)) is None})


def bridged_metrics(args: AlertsArgs) -> list[str]:
    """Trigger and gate metrics whose rules read the bridge gauge (their source is not Prometheus)."""
    return sorted(
        {m for m in _watched(args) if args.plan.metric(m).source.provider not in (PROMETHEUS, MANUAL)}
    )


def _rule_manifest(args: AlertsArgs, name: str, group: str, rules: list[Manifest]) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": args.namespace,
            "labels": {**naming.base_labels(args.service, COMPONENT), **args.alerts.rule_labels},
        },
        "spec": {"groups": [{"name": group, "interval": "30s", "rules": rules}]},
    }


def trigger_rule_manifest(args: AlertsArgs) -> Manifest:
    return _rule_manifest(
        args,
        f"{args.service}-rollback-triggers",
        f"{args.service}.rollback-triggers",
        trigger_rules(args) + missing_data_rules(args),
    )


def gate_rule_manifest(args: AlertsArgs) -> Manifest:
    return _rule_manifest(
        args, f"{args.service}-stage-alerts", f"{args.service}.stage-alerts", gate_rules(args)
    )


def route_args(args: AlertsArgs) -> RouteArgs:
    """Where this service's alerts go (``infra/alert_route.py``): the controller and Slack."""
    return RouteArgs(
        service=args.service,
        namespace=args.namespace,
        webhook_url=effective_webhook_url(args),
        webhook_secret=args.webhook_secret,
        notify_secret=args.notify_secret,
        labels=tuple(sorted(args.alerts.rule_labels.items())),
    )


def effective_webhook_url(args: AlertsArgs) -> str:
    """``alerts.webhookUrl``, else the RolloutController's Service in the service's namespace."""
    return args.alerts.webhook_url or webhook_url(args.service, args.namespace)


def _threshold_steps(gate: Gate, direction: Direction | None) -> list[dict[str, Any]]:
    """Grafana threshold colours: green where the target holds, red beyond the alert threshold."""
    target = gate.target.value if gate.target else None
    alert = gate.alert.value if gate.alert else None
    if direction is Direction.HIGHER_IS_BETTER:
        steps: list[dict[str, Any]] = [{"color": "red", "value": None}]
        if alert is not None:
            steps.append({"color": "yellow", "value": alert})
        if target is not None:
            steps.append({"color": "green", "value": target})
        return steps
    steps = [{"color": "green", "value": None}]
    if target is not None:
        steps.append({"color": "yellow", "value": target})
    if alert is not None:
        steps.append({"color": "red", "value": alert})
    return steps


def traffic_query(args: AlertsArgs) -> str:
    return (
        args.alerts.traffic_query
        or f'sum by (colour) (rate(http_server_requests_total{{service="{args.service}"}}[5m]))'
    )


def dashboard(args: AlertsArgs) -> dict[str, Any]:
    """The Grafana dashboard model (pure): stage header, live split, one panel per gate, triggers."""
    stage = args.stage
    steps = " → ".join(f"{step.weight:g}%" for step in stage.steps)
    panels: list[dict[str, Any]] = [
        {
            "type": "text",
            "title": "Stage",
            "gridPos": {"x": 0, "y": 0, "w": 12, "h": 5},
            "options": {
                "mode": "markdown",
                "content": f"## {stage.name} (`{stage.id}`)\n\nPlanned steps: {steps}\n\n"
                f"Minimum duration: {format_duration(stage.min_duration)}; "
                f"rollback objective: {format_duration(stage.rollback_objective)}",
            },
        },
        {
            "type": "timeseries",
            "title": "Live traffic split by colour",
            "gridPos": {"x": 12, "y": 0, "w": 12, "h": 5},
            "targets": [{"refId": "A", "expr": traffic_query(args), "legendFormat": "{{colour}}"}],
            "fieldConfig": {"defaults": {"unit": "percentunit", "custom": {"stacking": {"mode": "percent"}}}},
        },
    ]
    y = 5
    for index, gate in enumerate(stage.gates):
        metric = args.plan.metric(gate.metric)
        panel: dict[str, Any] = {
            "type": "timeseries",
            "title": f"{metric.name}  target {gate.target or '-'}  alert {gate.alert or '-'}",
            "description": gate.note or metric.description,
            "gridPos": {"x": (index % 3) * 8, "y": y + (index // 3) * 6, "w": 8, "h": 6},
            "fieldConfig": {
                "defaults": {
                    "unit": metric.unit,
                    "thresholds": {"mode": "absolute", "steps": _threshold_steps(gate, metric.direction)},
                    "custom": {"thresholdsStyle": {"mode": "line"}},
                }
            },
        }
        query = metric_query(args, metric)
        if query is not None:
            panel["targets"] = [{"refId": "A", "expr": query}]
        else:
            panel["description"] = "reported by a person (manual gate): see the promotion pull request"
        panels.append(panel)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": f"{args.service}-rollout"[:40],
        "title": f"{args.plan.name}: {args.service} rollout ({args.region})",
        "tags": ["markethub-rollout", args.service],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "panels": panels,
        "annotations": {
            "list": [
                {
                    "name": "Rollback triggers",
                    "expr": 'ALERTS{rollout_action="rollback",rollout_service="' + args.service + '"}',
                    "enable": True,
                }
            ]
        },
    }


def dashboard_manifest(args: AlertsArgs) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{args.service}-rollout-dashboard",
            "namespace": args.alerts.dashboard_namespace or args.namespace,
            "labels": {**naming.base_labels(args.service, COMPONENT), DASHBOARD_LABEL: "1"},
        },
        "data": {f"{args.service}-rollout.json": json.dumps(dashboard(args), indent=1, sort_keys=True)},
    }


class RollbackAlerts(pulumi.ComponentResource):
    """Alert rules for the rollback triggers and the stage's gates, their route, and the dashboard."""

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("markethub:infra:RollbackAlerts", name, None, opts)
        child = kube.child_options(self, opts)
        self.trigger_rules = kube.apply(f"{name}-triggers", trigger_rule_manifest(args), child)
        self.gate_rules = kube.apply(f"{name}-gates", gate_rule_manifest(args), child)
        self.route = kube.apply(f"{name}-route", alertmanager_config_manifest(route_args(args)), child)
        self.dashboard = kube.apply(f"{name}-dashboard", dashboard_manifest(args), child)
        self.register_outputs(
            {
                "unruled": unruled_metrics(args),
                "bridged": bridged_metrics(args),
                "webhook": effective_webhook_url(args),
            }
        )
