"""Where the metric backends are: endpoints and limits, from environment variables or code."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rollout_policies.errors import UserError
from rollout_policies.providers.base import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT

# Environment variable -> what it sets. docs/providers.md lists the same table.
ENVIRONMENT = MappingProxyType(
    {
        "ROLLOUT_PROMETHEUS_URL": "Prometheus server URL, e.g. http://127.0.0.1:9090",
        "ROLLOUT_CLOUDWATCH_ENDPOINT_URL": "CloudWatch endpoint (moto in tests); default: AWS",
        "ROLLOUT_CLOUDWATCH_REGION": "CloudWatch region; default AWS_REGION, AWS_DEFAULT_REGION, us-east-1",
        "ROLLOUT_SQL_DSN": "analytics database DSN, e.g. postgresql://reader@db/analytics",
        "ROLLOUT_JSON_BASE_URLS": "JSON API base URLs by name: crash_reporter=https://...,surveys=https://...",
        "ROLLOUT_METRICS_FILE": "a metrics file (YAML or JSON) for metrics whose provider is metrics_file",
        "ROLLOUT_PROVIDER_TIMEOUT": f"seconds per request (default {DEFAULT_TIMEOUT:g})",
        "ROLLOUT_PROVIDER_ATTEMPTS": f"tries per query for transient failures (default {DEFAULT_ATTEMPTS})",
    }
)


def _base_urls(text: str, variable: str) -> dict[str, str]:
    urls: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise UserError(
                f"{variable}: {item!r} is not name=url (e.g. crash_reporter=https://crashes.example)"
            )
        urls[name.strip()] = url.strip()
    return urls


def _number(environ: Mapping[str, str], variable: str, default: float) -> float:
    text = environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{variable}: not a number: {text!r}") from None
    if value <= 0:
        raise UserError(f"{variable}: must be above zero, not {text}")
    return value


@dataclass(frozen=True)
class ProviderSettings:
    """Endpoints for every backend. A backend left unset reports its metrics as errors, never as passes."""

    prometheus_url: str | None = None
    cloudwatch_endpoint_url: str | None = None
    cloudwatch_region: str | None = None
    sql_dsn: str | None = None
    json_base_urls: Mapping[str, str] = field(default_factory=dict)
    metrics_file: str | None = None
    # Manual metric values a person recorded: key -> number or (number, signed_at).
    signoffs: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProviderSettings:
        env = os.environ if environ is None else environ
        return cls(
            prometheus_url=env.get("ROLLOUT_PROMETHEUS_URL") or None,
            cloudwatch_endpoint_url=env.get("ROLLOUT_CLOUDWATCH_ENDPOINT_URL") or None,
            cloudwatch_region=(
                env.get("ROLLOUT_CLOUDWATCH_REGION")
                or env.get("AWS_REGION")
                or env.get("AWS_DEFAULT_REGION")
                or None
            ),
            sql_dsn=env.get("ROLLOUT_SQL_DSN") or None,
            json_base_urls=_base_urls(env.get("ROLLOUT_JSON_BASE_URLS", ""), "ROLLOUT_JSON_BASE_URLS"),
            metrics_file=env.get("ROLLOUT_METRICS_FILE") or None,
            timeout=_number(env, "ROLLOUT_PROVIDER_TIMEOUT", DEFAULT_TIMEOUT),
            attempts=int(_number(env, "ROLLOUT_PROVIDER_ATTEMPTS", DEFAULT_ATTEMPTS)),
        )

    def for_provider(self, name: str) -> dict[str, Any]:
        """The keyword settings ``provider_for(name, ...)`` takes, for the registry's backends."""
        limits = {"timeout": self.timeout, "attempts": self.attempts}
        if name == "prometheus":
            return {"url": self.prometheus_url, **limits}
        if name == "cloudwatch":
            return {"endpoint_url": self.cloudwatch_endpoint_url, "region": self.cloudwatch_region, **limits}
        if name == "sql":
            return {"dsn": self.sql_dsn, **limits}
        if name == "json_http":
            return {"base_urls": dict(self.json_base_urls), **limits}
        if name == "manual":
            return {"signoffs": dict(self.signoffs)}
        if name == "metrics_file":
            return {"path": self.metrics_file}
        return {}
