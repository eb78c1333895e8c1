"""The prometheus-operator's translation of an AlertmanagerConfig into Alertmanager's own configuration,
for the fields this project's route uses, so Debian's Alertmanager can run the generated route.

As the operator does it (``pkg/alertmanager/amcfg.go``): the object's route becomes a child of the
top route with ``continue: true`` and, with the default ``OnNamespace`` strategy, a
``namespace="<the object's namespace>"`` matcher in front of its own; receivers are renamed
``<namespace>/<name>/<receiver>``; Secret references are replaced by the Secret's value. A field
this translation does not know is refused, so a route can never pass a test by being half read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SecretReader = Callable[[str, str], str]

_ROUTE_FIELDS = {
    "receiver",
    "groupBy",
    "groupWait",
    "groupInterval",
    "repeatInterval",
    "matchers",
    "routes",
    "continue",
}
_SNAKE = {
    "groupBy": "group_by",
    "groupWait": "group_wait",
    "groupInterval": "group_interval",
    "repeatInterval": "repeat_interval",
}


class UnsupportedField(Exception):
    """The AlertmanagerConfig uses a field this translation does not handle."""


def _matchers(items: list[Mapping[str, Any]]) -> list[str]:
    out = []
    for item in items:
        op = item.get("matchType", "=")
        if op not in ("=", "!=", "=~", "!~"):
            raise UnsupportedField(f"matchType {op}")
        out.append(f'{item["name"]}{op}"{item["value"]}"')
    return out


def _route(route: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    unknown = set(route) - _ROUTE_FIELDS
    if unknown:
        raise UnsupportedField(f"route fields {sorted(unknown)}")
    out: dict[str, Any] = {}
    if "receiver" in route:
        out["receiver"] = f"{prefix}/{route['receiver']}"
    for key, snake in _SNAKE.items():
        if key in route:
            out[snake] = route[key]
    if route.get("matchers"):
        out["matchers"] = _matchers(route["matchers"])
    if route.get("continue"):
        out["continue"] = True
    if route.get("routes"):
        out["routes"] = [_route(child, prefix) for child in route["routes"]]
    return out


def _secret(ref: Mapping[str, str], secrets: SecretReader) -> str:
    return secrets(ref["name"], ref["key"])


def _receiver(receiver: Mapping[str, Any], prefix: str, secrets: SecretReader) -> dict[str, Any]:
    unknown = set(receiver) - {"name", "webhookConfigs", "slackConfigs"}
    if unknown:
        raise UnsupportedField(f"receiver fields {sorted(unknown)}")
    out: dict[str, Any] = {"name": f"{prefix}/{receiver['name']}"}
    webhooks = []
    for webhook in receiver.get("webhookConfigs", []):
        unknown = set(webhook) - {"url", "sendResolved", "httpConfig"}
        if unknown:
            raise UnsupportedField(f"webhookConfigs fields {sorted(unknown)}")
        item: dict[str, Any] = {"url": webhook["url"], "send_resolved": webhook.get("sendResolved", True)}
        http = webhook.get("httpConfig") or {}
        if set(http) - {"authorization"}:
            raise UnsupportedField(f"httpConfig fields {sorted(set(http) - {'authorization'})}")
        if "authorization" in http:
            authorization = http["authorization"]
            item["http_config"] = {
                "authorization": {
                    "type": authorization.get("type", "Bearer"),
                    "credentials": _secret(authorization["credentials"], secrets),
                }
            }
        webhooks.append(item)
    if webhooks:
        out["webhook_configs"] = webhooks
    slacks = []
    for slack in receiver.get("slackConfigs", []):
        unknown = set(slack) - {"apiURL", "sendResolved", "title", "text", "channel"}
        if unknown:
            raise UnsupportedField(f"slackConfigs fields {sorted(unknown)}")
        item = {
            "api_url": _secret(slack["apiURL"], secrets),
            "send_resolved": slack.get("sendResolved", False),
        }
        for key in ("title", "text", "channel"):
            if key in slack:
                item[key] = slack[key]
        slacks.append(item)
    if slacks:
        out["slack_configs"] = slacks
    return out


def translate(manifest: Mapping[str, Any], secrets: SecretReader) -> dict[str, Any]:
    """Alertmanager's configuration for one AlertmanagerConfig object (OnNamespace strategy)."""
    namespace = manifest["metadata"]["namespace"]
    prefix = f"{namespace}/{manifest['metadata']['name']}"
    spec = manifest["spec"]
    if set(spec) - {"route", "receivers"}:
        raise UnsupportedField(f"spec fields {sorted(set(spec) - {'route', 'receivers'})}")
    route = _route(spec["route"], prefix)
    route["matchers"] = [f'namespace="{namespace}"', *route.get("matchers", [])]
    route["continue"] = True
    return {
        "route": {"receiver": "null", "routes": [route]},
        "receivers": [{"name": "null"}, *[_receiver(r, prefix, secrets) for r in spec["receivers"]]],
    }
