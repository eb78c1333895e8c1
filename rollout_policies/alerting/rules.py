"""Prometheus rule files and Alertmanager routes for the rollback triggers, outside Kubernetes.

The trigger rules are the ones ``infra/alerts.py`` puts in the cluster's PrometheusRule (same
expressions, same ``for:`` windows, same routing labels); here they are written as a plain rule file
for a Prometheus that has no operator (Debian's, in tests and the demo). Files are JSON, which
Prometheus reads as YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.alerts import AlertsArgs, metric_query, missing_data_rules, trigger_rules
from infra.settings import Alerts
from rollout_policies.plan.model import Plan

DEFAULT_NAMESPACE = "markethub"
RECEIVER = "rollout-webhook"
NOTIFY_RECEIVER = "rollout-notify"


def _args(
    plan: Plan,
    stack: str,
    region: str,
    bridge_metric: str | None = None,
    detection_budget: str | None = None,
    missing_data_for: str | None = None,
) -> AlertsArgs:
    settings = {
        "bridge_metric": bridge_metric,
        "detection_budget": detection_budget,
        "missing_data_for": missing_data_for,
    }
    alerts = Alerts(**{key: value for key, value in settings.items() if value is not None})
    return AlertsArgs(
        service=plan.service,
        namespace=DEFAULT_NAMESPACE,
        plan=plan,
        stage=plan.stages[0],  # trigger rules do not depend on the stage
        stack=stack,
        region=region,
        alerts=alerts,
    )


def trigger_queries(plan: Plan) -> dict[str, str]:
    """Trigger metric id -> the PromQL the alert rules watch (own query, or the bridge gauge)."""
    args = _args(plan, "-", "-")
    queries: dict[str, str] = {}
    for trigger in plan.triggers:
        query = metric_query(args, plan.metric(trigger.metric))
        if query is not None:
            queries[trigger.metric] = query
    return queries


def trigger_rule_groups(
    plan: Plan,
    stacks: dict[str, str],
    *,
    interval: str = "30s",
    detection_budget: str | None = None,
    missing_data_for: str | None = None,
) -> dict[str, Any]:
    """A rule file's content: one group per stack (``stacks`` maps stack -> region), with the
    trigger rules and their missing-data rules, as in the cluster's PrometheusRule.

    ``detection_budget`` (default: the infra's, 35s) is taken off each window in ``for:``;
    ``missing_data_for`` (default 2m) is the shortest ``for:`` of a missing-data rule.
    """
    groups = []
    for stack, region in stacks.items():
        args = _args(
            plan, stack, region, detection_budget=detection_budget, missing_data_for=missing_data_for
        )
        rules = trigger_rules(args) + missing_data_rules(args)
        groups.append(
            {"name": f"{plan.service}.rollback-triggers.{stack}", "interval": interval, "rules": rules}
        )
    return {"groups": groups}


def write_trigger_rules(
    path: Path,
    plan: Plan,
    stacks: dict[str, str],
    *,
    interval: str = "30s",
    detection_budget: str | None = None,
    missing_data_for: str | None = None,
) -> Path:
    """Write the trigger rule file (atomically: Prometheus may reload at any moment)."""
    groups = trigger_rule_groups(
        plan,
        stacks,
        interval=interval,
        detection_budget=detection_budget,
        missing_data_for=missing_data_for,
    )
    content = json.dumps(groups, indent=1)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(content + "\n")
    partial.replace(path)
    return path


def alertmanager_config(
    webhook_url: str,
    token_file: Path,
    *,
    group_wait: str = "0s",
    group_interval: str = "1m",
    repeat_interval: str = "1h",
    service: str | None = None,
    notify_url: str | None = None,
) -> str:
    """Alertmanager configuration routing rollback alerts to ``rollout serve`` with the shared token,
    and every other alert of the service (gate alerts, missing trigger data) to ``notify_url``.

    The token is read from ``token_file`` by Alertmanager (``credentials_file``), so it is never in
    the configuration. A rollback trigger's window already elapsed in Prometheus: ``group_wait`` 0s
    sends at once. Without ``notify_url`` the other alerts go to ``rollout serve`` too (it
    acknowledges them): they are never dropped.
    """
    service_matcher = [f'rollout_service="{service}"'] if service else []
    route: dict[str, Any] = {
        "receiver": "default-null",
        "routes": [
            {
                "receiver": RECEIVER,
                "matchers": ['rollout_action="rollback"', *service_matcher],
                "group_by": ["alertname", "rollout_stack"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            {
                "receiver": NOTIFY_RECEIVER if notify_url else RECEIVER,
                "matchers": ['rollout_action!="rollback"', 'rollout_service=~".+"', *service_matcher],
                "group_by": ["alertname", "rollout_stack"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
        ],
    }
    notify: list[dict[str, Any]] = []
    if notify_url:
        notify = [{"name": NOTIFY_RECEIVER, "webhook_configs": [{"url": notify_url, "send_resolved": True}]}]
    config = {
        "route": route,
        "receivers": [
            {"name": "default-null"},
            *notify,
            {
                "name": RECEIVER,
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                        },
                    }
                ],
            },
        ],
    }
    return json.dumps(config, indent=1) + "\n"


__all__ = [
    "alertmanager_config",
    "trigger_queries",
    "trigger_rule_groups",
    "write_trigger_rules",
]
