"""The AlertmanagerConfig that routes a service's alerts: rollbacks to the controller, the rest to people.

Kept apart from the rule generation (``infra/alerts.py``): the rules say what fires, this says where
it goes. The prometheus-operator adds a ``namespace="<this object's namespace>"`` matcher to the
route (its default ``OnNamespace`` strategy), so the rules carry that label (``routing_labels``).

- ``rollout_action="rollback"`` goes to the controller's webhook (``rollout serve``) with the bearer
  token from the webhook Secret, and on to the notification receiver too, so people see the trigger
  fire even when the controller is down.
- Everything else of the service (gate alerts, missing-data alerts) goes to the notification
  receiver: Slack, its incoming-webhook URL from the notification Secret. Nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import naming
from infra.kube import Manifest

WEBHOOK_RECEIVER = "rollout-webhook"
NOTIFY_RECEIVER = "rollout-notify"
TOKEN_KEY = "token"
SLACK_KEY = "slack-webhook-url"


@dataclass(frozen=True)
class RouteArgs:
    service: str
    namespace: str
    webhook_url: str
    webhook_secret: str = "rollout-webhook"
    notify_secret: str = "rollout-notify"
    labels: tuple[tuple[str, str], ...] = ()


def _match(name: str, value: str) -> Manifest:
    return {"name": name, "value": value, "matchType": "="}


def alertmanager_config_manifest(args: RouteArgs) -> Manifest:
    """The AlertmanagerConfig ``<service>-rollout`` (``monitoring.coreos.com/v1alpha1``)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {
            "name": f"{args.service}-rollout",
            "namespace": args.namespace,
            "labels": {**naming.base_labels(args.service, "alerts"), **dict(args.labels)},
        },
        "spec": {
            "route": {
                "receiver": NOTIFY_RECEIVER,
                "groupBy": ["alertname", "rollout_stack"],
                "groupWait": "30s",
                "groupInterval": "5m",
                "repeatInterval": "4h",
                "matchers": [_match("rollout_service", args.service)],
                "routes": [
                    {
                        "receiver": WEBHOOK_RECEIVER,
                        "matchers": [_match("rollout_action", "rollback")],
                        # A rollback trigger's window already elapsed in Prometheus: send at once.
                        "groupWait": "0s",
                        "groupInterval": "1m",
                        "repeatInterval": "1h",
                        "continue": True,
                    },
                    {"receiver": NOTIFY_RECEIVER},
                ],
            },
            "receivers": [
                {
                    "name": WEBHOOK_RECEIVER,
                    "webhookConfigs": [
                        {
                            "url": args.webhook_url,
                            "sendResolved": True,
                            "httpConfig": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials": {"name": args.webhook_secret, "key": TOKEN_KEY},
                                }
                            },
                        }
                    ],
                },
                {
                    "name": NOTIFY_RECEIVER,
                    "slackConfigs": [
                        {
                            "apiURL": {"name": args.notify_secret, "key": SLACK_KEY},
                            "sendResolved": True,
                            "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}"
                            " ({{ .CommonLabels.rollout_stack }})",
                            "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}",
                        }
                    ],
                },
            ],
        },
    }
