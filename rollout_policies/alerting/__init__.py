"""Automatic rollback: the Alertmanager webhook receiver (``rollout serve``) and the polling watch.

Public API:
- ``WebhookReceiver`` / ``RunningReceiver`` / ``ServerLimits``: handle notifications; serve them over
  HTTP (Starlette on uvicorn) within timeouts and a connection cap.
- ``TriggerWatch``: poll Prometheus and evaluate the plan's triggers (``rollout watch``).
- ``GitRollback``: the rollback both run (``GitOps.rollback`` with the traffic apply).
- ``write_trigger_rules`` / ``alertmanager_config``: the Prometheus rule file and the Alertmanager
  route for a Prometheus without the operator.
"""

from rollout_policies.alerting.actions import GitRollback
from rollout_policies.alerting.dedup import Deduplicator
from rollout_policies.alerting.payload import Notification, PayloadRejected, parse_notification
from rollout_policies.alerting.receiver import ReceiverMetrics, WebhookReceiver
from rollout_policies.alerting.rules import (
    alertmanager_config,
    trigger_queries,
    trigger_rule_groups,
    write_trigger_rules,
)
from rollout_policies.alerting.server import RunningReceiver, ServerLimits
from rollout_policies.alerting.watch import TriggerWatch, WatchTick

__all__ = [
    "Deduplicator",
    "GitRollback",
    "Notification",
    "PayloadRejected",
    "ReceiverMetrics",
    "RunningReceiver",
    "ServerLimits",
    "TriggerWatch",
    "WatchTick",
    "WebhookReceiver",
    "alertmanager_config",
    "parse_notification",
    "trigger_queries",
    "trigger_rule_groups",
    "write_trigger_rules",
]
