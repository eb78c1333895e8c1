"""The provider registries: backend name -> factory. Adding a backend is one module and a line here.

``PROVIDERS`` answer a metric's query (``MetricProvider``); ``COMPARISON_PROVIDERS`` also answer a
comparison gate's per-version counts (``ComparisonProvider``). Both reject unknown names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from rollout_policies.errors import UserError
from rollout_policies.providers.base import ComparisonProvider, MetricProvider
from rollout_policies.providers.cloudwatch import CloudWatchProvider
from rollout_policies.providers.json_http import JsonHttpProvider
from rollout_policies.providers.manual import ManualProvider
from rollout_policies.providers.metrics_file import MetricsFileProvider
from rollout_policies.providers.prometheus import PrometheusProvider
from rollout_policies.providers.sql import SqlProvider

T = TypeVar("T")

PROVIDERS: Mapping[str, Callable[..., MetricProvider]] = MappingProxyType(
    {
        "prometheus": PrometheusProvider,
        "cloudwatch": CloudWatchProvider,
        "sql": SqlProvider,
        "json_http": JsonHttpProvider,
        "manual": ManualProvider,
        "metrics_file": MetricsFileProvider,
    }
)

COMPARISON_PROVIDERS: Mapping[str, Callable[..., ComparisonProvider]] = MappingProxyType(
    {
        "prometheus": PrometheusProvider,
        "metrics_file": MetricsFileProvider,
    }
)


def provider_for(name: str, **settings: Any) -> MetricProvider:
    """The provider called ``name``, built with ``settings``; an unknown name or setting is a UserError.

    Unlike Flagger's factory there is no fallback: a typo in a plan must not quietly query Prometheus.
    """
    return _build(PROVIDERS, "metric provider", name, settings)


def comparison_provider_for(name: str, **settings: Any) -> ComparisonProvider:
    """The comparison provider called ``name``, built with ``settings``, as ``provider_for``."""
    return _build(COMPARISON_PROVIDERS, "comparison provider", name, settings)


def _build(registry: Mapping[str, Callable[..., T]], kind: str, name: str, settings: dict[str, Any]) -> T:
    factory = registry.get(name)
    if factory is None:
        known = ", ".join(sorted(registry))
        raise UserError(f"unknown {kind} {name!r} (known: {known})")
    try:
        inspect.signature(factory).bind(**settings)
    except TypeError as err:
        raise UserError(f"{kind} {name!r}: bad settings: {err}") from None
    return factory(**settings)
